// The tokenizer loaders behind make_tokenizer, and what they share. Internal to src/data.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "data/tokenizer.hpp"

namespace flowlm::data::detail {

/// \brief What a model directory's tokenizer_config.json (else special_tokens_map.json) says
/// about the special tokens: their strings, and for SentencePiece whether encode adds them.
struct SpecialTokenConfig {
  /// A key that is absent (given = false), null (no such token) or names a token.
  struct Field {
    bool given = false;
    std::optional<std::string> value;
  };
  std::filesystem::path file;  ///< where it came from ("" = no such file)
  Field bos, eos, pad;
  std::optional<bool> add_bos, add_eos;
};
/// \brief Reads the config beside a tokenizer file (IoError / ConfigError naming the file when it
/// is there but unreadable or malformed).
SpecialTokenConfig read_special_token_config(const std::filesystem::path& dir);

/// \brief A Hugging Face tokenizer.json.
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& file, const std::string& name);
/// \brief GPT-2's encoder.json + vocab.bpe (also vocab.json + merges.txt): as transformers'
/// GPT2TokenizerFast builds it (byte-level BPE with the GPT-2 regex, <|endoftext|> special).
std::unique_ptr<Tokenizer> load_gpt2_bpe(const std::filesystem::path& encoder_json,
                                         const std::filesystem::path& merges, const std::string& name);
/// \brief A SentencePiece tokenizer.model, through libsentencepiece.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::filesystem::path& file, const std::string& name);

/// \brief The whole file as a string (IoError naming it).
std::string read_file_bytes(const std::filesystem::path& path, const char* what);

}  // namespace flowlm::data::detail
