// SentencePiece tokenizer.model through Debian's libsentencepiece: the library's own encoding
// (its normalizer, whitespace handling and byte fallback), so flowlm agrees with the
// `sentencepiece` Python package on the same model.
#include <sentencepiece_processor.h>

#include "core/error.hpp"
#include "data/tokenizer_impl.hpp"

namespace flowlm::data::detail {
namespace fs = std::filesystem;

namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const fs::path& file, std::string name) : name_(std::move(name)) {
    const std::string bytes = read_file_bytes(file, "SentencePiece model");
    const auto st = sp_.LoadFromSerializedProto(bytes);
    if (!st.ok())
      fail<ConfigError>("{}: not a SentencePiece model ({}); a tokenizer.model file is expected",
                        file.string(), st.ToString());
    const auto id_or_none = [](int id) { return id < 0 ? std::nullopt : std::optional<TokenId>(id); };
    bos_ = id_or_none(sp_.bos_id());
    eos_ = id_or_none(sp_.eos_id());
    pad_ = id_or_none(sp_.pad_id());
    // Which tokens encode adds: tokenizer_config.json's add_bos_token / add_eos_token, else as
    // transformers' LlamaTokenizer and GemmaTokenizer do (bos yes, eos no).
    const SpecialTokenConfig c = read_special_token_config(file.parent_path());
    if (bos_ && c.add_bos.value_or(true)) prefix_.push_back(*bos_);
    if (eos_ && c.add_eos.value_or(false)) suffix_.push_back(*eos_);
  }

  std::string name() const override { return name_; }
  std::string kind() const override { return "sentencepiece"; }
  index_t vocab_size() const override { return sp_.GetPieceSize(); }
  std::optional<TokenId> bos() const override { return bos_; }
  std::optional<TokenId> eos() const override { return eos_; }
  std::optional<TokenId> pad() const override { return pad_; }
  std::vector<TokenId> special_prefix() const override { return prefix_; }
  std::vector<TokenId> special_suffix() const override { return suffix_; }

  std::string token(TokenId id) const override {
    check(id, 0);
    return sp_.IdToPiece(id);
  }

  std::vector<TokenId> encode(std::string_view text, bool add_special) const override {
    std::string fixed;
    if (sanitize_utf8(text, fixed)) text = fixed;
    std::vector<int> ids;
    const auto st = sp_.Encode(text, &ids);
    if (!st.ok())
      fail<DataError>("tokenizer {}: SentencePiece cannot encode the text: {}", name_, st.ToString());
    std::vector<TokenId> out;
    out.reserve(ids.size() + 2);
    if (add_special) out = prefix_;
    out.insert(out.end(), ids.begin(), ids.end());
    if (add_special) out.insert(out.end(), suffix_.begin(), suffix_.end());
    return out;
  }

  std::string decode(const std::vector<TokenId>& tokens, bool /*skip_special*/) const override {
    // SentencePiece decodes control tokens (bos, eos, pad) to nothing either way.
    for (std::size_t i = 0; i < tokens.size(); ++i) check(tokens[i], i);
    std::string out;
    const auto st = sp_.Decode(std::vector<int>(tokens.begin(), tokens.end()), &out);
    if (!st.ok()) fail<DataError>("tokenizer {}: SentencePiece cannot decode: {}", name_, st.ToString());
    return out;
  }

 private:
  void check(TokenId id, std::size_t at) const {
    if (id < 0 || id >= sp_.GetPieceSize())
      fail<DataError>("tokenizer {}: token {} at index {} is not in the vocabulary (vocab_size {})", name_,
                      id, at, sp_.GetPieceSize());
  }

  std::string name_;
  sentencepiece::SentencePieceProcessor sp_;
  std::optional<TokenId> bos_, eos_, pad_;
  std::vector<TokenId> prefix_, suffix_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_sentencepiece(const fs::path& file, const std::string& name) {
  return std::make_unique<SentencePieceTokenizer>(file, name);
}

}  // namespace flowlm::data::detail
