// JSONL prompt/answer records, the input of `prepare` with prepare.format = "jsonl"
// (src/data/sampleset.cpp read_jsonl, src/data/prepare.cpp build_sample): each record is read,
// framed and tokenized (byte tokenizer, block_size 64, the overlong rule cycling over error,
// truncate, drop). Input: the JSONL file; after a NUL byte, a prepare.template value. What
// build_sample keeps must be a valid sample: [EOT] ... [EOT], 1 <= answer_start < length,
// length - 1 <= block_size.
#include <fmt/format.h>

#include "data/prepare.hpp"
#include "data/sampleset.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace flowlm;
  const auto parts = fuzz::split_parts(fuzz::as_text(data, size), 2);
  const auto path = fuzz::write_scratch("records.jsonl", parts[0]);
  return fuzz::run([&] {
    const std::string tmpl = data::prompt_template(parts.size() > 1 ? std::string(parts[1]) : "none");
    const auto records = data::read_jsonl(path, "prompt", "answer");
    const data::ByteTokenizer tok;
    const data::Framing fr = data::framing_of(tok);
    constexpr index_t kBlock = 64;
    static const data::Overlong rules[] = {data::Overlong::error, data::Overlong::truncate,
                                           data::Overlong::drop};
    for (std::size_t r = 0; r < records.size(); ++r) {
      std::vector<std::int32_t> tokens;
      std::int64_t answer_start = 0;
      bool truncated = false;
      try {
        if (!data::build_sample(tok, fr, tmpl, records[r], kBlock, rules[r % 3],
                                fmt::format("record {}", r + 1), tokens, answer_start, truncated))
          continue;
      } catch (const DataError&) {
        continue;  // an empty answer, a NUL byte, or an over-long record under "error"
      }
      const auto n = static_cast<std::int64_t>(tokens.size());
      FLOWLM_FUZZ_CHECK(n >= 2 && n - 1 <= kBlock, fmt::format("record {}: {} tokens", r + 1, n));
      FLOWLM_FUZZ_CHECK(answer_start >= 1 && answer_start < n,
                        fmt::format("record {}: answer_start {} of {}", r + 1, answer_start, n));
      FLOWLM_FUZZ_CHECK(tokens.front() == tok.eot(),
                        fmt::format("record {} starts with {}", r + 1, tokens.front()));
      for (const auto t : tokens)
        FLOWLM_FUZZ_CHECK(t >= 0 && t < tok.vocab_size(), fmt::format("token {}", t));
      data::SampleSet set;
      set.append(tokens, answer_start);
    }
  });
}
