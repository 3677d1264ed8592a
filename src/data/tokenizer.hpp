// Tokenizers turn text into token ids and back. Built from the job file's `tokenizer` value:
// "byte", or the path of a tokenizer file or a Hugging Face model directory (make_tokenizer).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/types.hpp"

namespace flowlm::data {

using TokenId = std::int32_t;

/// \brief Text <-> token ids. Encoding keeps per-tokenizer caches: use one object per thread.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  /// \brief The tokenizer as the job file names it ("byte", or the path it was loaded from).
  virtual std::string name() const = 0;
  /// \brief The kind: "byte", "tokenizer.json", "gpt2-bpe" (encoder.json + vocab.bpe), "sentencepiece".
  virtual std::string kind() const = 0;
  /// \brief Text -> ids. Special and added tokens written in the text are matched first, as the
  /// Hugging Face tokenizers library does. With add_special, also the tokens the tokenizer puts
  /// around every sequence (special_prefix() and special_suffix()). Invalid UTF-8 is read as
  /// U+FFFD per maximal ill-formed subsequence (Python's bytes.decode("utf-8", "replace")),
  /// except by the byte tokenizer, which keeps every byte.
  virtual std::vector<TokenId> encode(std::string_view text, bool add_special = false) const = 0;
  /// \brief Ids -> text (as the tokenizers library's decode; byte sequences that are not UTF-8
  /// come out as U+FFFD). skip_special leaves out special tokens. Throws DataError on an id
  /// outside [0, vocab_size()).
  virtual std::string decode(const std::vector<TokenId>& tokens, bool skip_special = false) const = 0;
  /// \brief The pieces encode() hands to the model, in order: added tokens as they are written,
  /// the rest after the normalizer and the pre-tokenizers (byte-level: raw bytes, not "Ġ" forms),
  /// as the tokenizers library's normalize + pre_tokenize_str show them. The byte tokenizer and
  /// SentencePiece have no such stage: one piece, the (sanitized) text.
  virtual std::vector<std::string> pre_tokenize(std::string_view text) const;
  /// \brief One more than the largest id (model vocabulary and added tokens).
  virtual index_t vocab_size() const = 0;
  /// \brief The token's string as the vocabulary writes it ("Ġthe", "<0x0A>", "</s>"); DataError if
  /// out of range.
  virtual std::string token(TokenId id) const = 0;
  /// \brief Beginning-of-sequence, end-of-sequence and padding tokens, when the tokenizer has them.
  virtual std::optional<TokenId> bos() const = 0;
  virtual std::optional<TokenId> eos() const = 0;
  virtual std::optional<TokenId> pad() const = 0;
  /// \brief The ids encode(text, true) puts before / after the text's own tokens (the
  /// tokenizer.json post_processor; for SentencePiece, add_bos_token / add_eos_token).
  virtual std::vector<TokenId> special_prefix() const = 0;
  virtual std::vector<TokenId> special_suffix() const = 0;
  /// \brief The end-of-text token placed between documents: eos(). DataError when there is none.
  TokenId eot() const;
  /// \brief "tokenizer.json, vocab 32000, bos <s> (1), eos </s> (2), pad none": for log lines.
  std::string describe() const;
};

/// \brief Byte-level tokenizer: vocab 256, token = byte value. End-of-text is 0: NUL never
/// occurs in text files, so encode() rejects it (DataError) rather than confuse it with EOT.
class ByteTokenizer final : public Tokenizer {
 public:
  std::string name() const override { return "byte"; }
  std::string kind() const override { return "byte"; }
  std::vector<TokenId> encode(std::string_view text, bool add_special = false) const override;
  std::string decode(const std::vector<TokenId>& tokens, bool skip_special = false) const override;
  std::vector<std::string> pre_tokenize(std::string_view text) const override;
  index_t vocab_size() const override { return 256; }
  std::string token(TokenId id) const override;
  std::optional<TokenId> bos() const override { return std::nullopt; }
  std::optional<TokenId> eos() const override { return 0; }
  std::optional<TokenId> pad() const override { return std::nullopt; }
  std::vector<TokenId> special_prefix() const override { return {}; }
  std::vector<TokenId> special_suffix() const override { return {}; }
};

/// \brief Where the tokenizer files of `path` are: the file itself, or in a directory
/// tokenizer.json, else tokenizer.model, else encoder.json + vocab.bpe (or vocab.json +
/// merges.txt). ConfigError when nothing fits.
std::filesystem::path resolve_tokenizer_file(const std::filesystem::path& path);

/// \brief "byte" -> ByteTokenizer; otherwise a path (file or model directory, see
/// resolve_tokenizer_file): a Hugging Face tokenizer.json (BPE: byte-level as GPT-2, Llama 3,
/// Qwen2, or with byte fallback as Llama 2, Mistral, Gemma), GPT-2 encoder.json + vocab.bpe, or a
/// SentencePiece tokenizer.model. bos/eos/pad come from tokenizer_config.json (or
/// special_tokens_map.json) beside the file when there is one. ConfigError for an unknown name,
/// an unsupported or malformed tokenizer (naming the file and the JSON key); IoError for
/// unreadable files.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec);

/// \brief `text` with every ill-formed UTF-8 subsequence replaced by U+FFFD (the Unicode
/// "maximal subpart" practice, as Python's and Rust's lossy decoders). Returns false and leaves
/// `out` untouched when `text` is valid already.
bool sanitize_utf8(std::string_view text, std::string& out);

}  // namespace flowlm::data
