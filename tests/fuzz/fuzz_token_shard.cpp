// Token shards (src/data/shard): llm.c shards and raw uint16 files, opened and validated by
// TokenShard. Input: one selector byte (format = b % 3: auto, llm.c, raw; vocab_size = one of
// 256, 50257, 65536, 1 by b / 3 % 4), then the file's bytes.
#include <fmt/format.h>

#include "data/shard.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace flowlm;
  if (size < 1) return 0;
  static const data::ShardFormat formats[] = {data::ShardFormat::Auto, data::ShardFormat::LlmC,
                                              data::ShardFormat::Raw};
  static const index_t vocabs[] = {256, 50257, 65536, 1};
  const data::ShardFormat format = formats[data[0] % 3];
  const index_t vocab = vocabs[data[0] / 3 % 4];
  const auto path = fuzz::write_scratch("shard.bin", fuzz::as_text(data + 1, size - 1));
  return fuzz::run([&] {
    const data::TokenShard shard(path, vocab, format);
    const auto bytes = static_cast<index_t>(size - 1);
    const bool llmc = shard.format() == data::ShardFormat::LlmC;
    FLOWLM_FUZZ_CHECK(shard.format() != data::ShardFormat::Auto, "a detected format");
    FLOWLM_FUZZ_CHECK(bytes == (llmc ? data::kShardHeaderBytes : 0) + 2 * shard.size(),
                      fmt::format("{} bytes, {} tokens", bytes, shard.size()));
    for (index_t i = 0; i < shard.size(); ++i)
      FLOWLM_FUZZ_CHECK(shard[i] < vocab, fmt::format("token {} at {} < vocab_size {}", shard[i], i, vocab));
  });
}
