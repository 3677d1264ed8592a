#include "data/tokenizer.hpp"

#include "core/error.hpp"

namespace flowlm::data {

std::vector<std::int32_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<std::int32_t> out(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b == 0)
      fail<DataError>(
          "byte tokenizer: NUL byte at offset {} (NUL is the end-of-text token; is this a binary file?)", i);
    out[i] = b;
  }
  return out;
}

std::string ByteTokenizer::decode(const std::vector<std::int32_t>& tokens) const {
  std::string out(tokens.size(), '\0');
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] > 255)
      fail<DataError>("byte tokenizer: token {} at index {} is not a byte (vocab_size 256)", tokens[i], i);
    out[i] = static_cast<char>(static_cast<unsigned char>(tokens[i]));
  }
  return out;
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name) {
  if (name == "byte") return std::make_unique<ByteTokenizer>();
  if (name == "gpt2")
    fail<ConfigError>("tokenizer = \"gpt2\" is not built yet; use tokenizer = \"byte\" (choices: byte)");
  fail<ConfigError>("unknown tokenizer \"{}\" (choices: byte)", name);
}

}  // namespace flowlm::data
