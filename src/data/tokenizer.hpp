// Tokenizers turn text into token ids and back. Built by name from the job file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/types.hpp"

namespace flowlm::data {

/// \brief Text <-> token ids.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// \brief The tokenizer's name as in the job file ("byte").
  virtual std::string name() const = 0;
  virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;
  /// \brief Throws DataError on an id outside [0, vocab_size()).
  virtual std::string decode(const std::vector<std::int32_t>& tokens) const = 0;
  virtual index_t vocab_size() const = 0;
  /// \brief The end-of-text token placed between documents.
  virtual std::int32_t eot() const = 0;
};

/// \brief Byte-level tokenizer: vocab 256, token = byte value. End-of-text is 0: NUL never
/// occurs in text files, so encode() rejects it (DataError) rather than confuse it with EOT.
class ByteTokenizer final : public Tokenizer {
 public:
  std::string name() const override { return "byte"; }
  std::vector<std::int32_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<std::int32_t>& tokens) const override;
  index_t vocab_size() const override { return 256; }
  std::int32_t eot() const override { return 0; }
};

/// \brief "byte" -> ByteTokenizer. Unknown names (and "gpt2", not built yet) throw ConfigError
/// listing the choices.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& name);

}  // namespace flowlm::data
