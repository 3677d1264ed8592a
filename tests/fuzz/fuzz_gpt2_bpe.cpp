// GPT-2's encoder.json + vocab.bpe (src/data/tokenizer_hf.cpp, load_gpt2_bpe) through
// make_tokenizer. Input: encoder.json; after a NUL byte, vocab.bpe; after a second NUL, a text
// to encode.
#include <filesystem>
#include <system_error>

#include "data/tokenizer.hpp"
#include "fuzz.hpp"
#include "tokenizer_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace flowlm;
  namespace fs = std::filesystem;
  const auto parts = fuzz::split_parts(fuzz::as_text(data, size), 3);
  std::error_code ec;
  fs::create_directories(fuzz::scratch_dir() / "gpt2", ec);
  const fs::path encoder = fuzz::write_scratch("gpt2/encoder.json", parts[0]);
  fuzz::write_scratch("gpt2/vocab.bpe", parts.size() > 1 ? parts[1] : std::string_view("#version: 0.2\n"));
  auto texts = fuzz::sample_texts();
  if (parts.size() > 2) texts.push_back(parts[2]);
  return fuzz::run([&] {
    const auto tok = data::make_tokenizer(encoder.string());
    fuzz::check_tokenizer(*tok, texts);
  });
}
