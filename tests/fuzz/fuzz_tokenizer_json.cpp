// Hugging Face tokenizer.json files (src/data/tokenizer_hf.cpp) through make_tokenizer: the
// normalizer, pre-tokenizer, BPE model, added tokens, post-processor and decoder sections, and
// the tokenizer_config.json beside the file (the part SentencePiece models share with this
// path: the .model file itself is libsentencepiece's). Input: the tokenizer.json; after a NUL
// byte, a text to encode; after a second NUL, the tokenizer_config.json.
#include <filesystem>
#include <system_error>

#include "data/tokenizer.hpp"
#include "fuzz.hpp"
#include "tokenizer_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace flowlm;
  namespace fs = std::filesystem;
  const auto parts = fuzz::split_parts(fuzz::as_text(data, size), 3);
  const fs::path dir = fuzz::scratch_dir() / "tokjson";
  std::error_code ec;
  fs::create_directories(dir, ec);
  fuzz::write_scratch("tokjson/tokenizer.json", parts[0]);
  fs::remove(dir / "tokenizer_config.json", ec);
  if (parts.size() > 2) fuzz::write_scratch("tokjson/tokenizer_config.json", parts[2]);
  auto texts = fuzz::sample_texts();
  if (parts.size() > 1) texts.push_back(parts[1]);
  return fuzz::run([&] {
    const auto tok = data::make_tokenizer(dir.string());
    fuzz::check_tokenizer(*tok, texts);
  });
}
