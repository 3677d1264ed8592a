#include "data/tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.hpp"
#include "data/tokenizer_impl.hpp"
#include "io/json_text.hpp"

namespace flowlm::data {
namespace fs = std::filesystem;

// ---- Tokenizer -------------------------------------------------------------------------

TokenId Tokenizer::eot() const {
  if (const auto e = eos()) return *e;
  fail<DataError>(
      "tokenizer {} has no end-of-sequence token to separate documents (set eos_token in "
      "tokenizer_config.json beside it)",
      name());
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  std::string fixed;
  if (sanitize_utf8(text, fixed)) return {fixed};
  return {std::string(text)};
}

std::string Tokenizer::describe() const {
  const auto show = [this](std::optional<TokenId> id) {
    return id ? fmt::format("{} ({})", token(*id), *id) : std::string("none");
  };
  return fmt::format("{}, vocab {}, bos {}, eos {}, pad {}", kind(), vocab_size(), show(bos()), show(eos()),
                     show(pad()));
}

// ---- ByteTokenizer ---------------------------------------------------------------------

std::vector<TokenId> ByteTokenizer::encode(std::string_view text, bool /*add_special*/) const {
  std::vector<TokenId> out(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    if (b == 0)
      fail<DataError>(
          "byte tokenizer: NUL byte at offset {} (NUL is the end-of-text token; is this a binary file?)", i);
    out[i] = b;
  }
  return out;
}

std::string ByteTokenizer::decode(const std::vector<TokenId>& tokens, bool skip_special) const {
  std::string out;
  out.reserve(tokens.size());
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] > 255)
      fail<DataError>("byte tokenizer: token {} at index {} is not a byte (vocab_size 256)", tokens[i], i);
    if (skip_special && tokens[i] == 0) continue;
    out.push_back(static_cast<char>(static_cast<unsigned char>(tokens[i])));
  }
  return out;
}

std::vector<std::string> ByteTokenizer::pre_tokenize(std::string_view text) const {
  return {std::string(text)};
}

std::string ByteTokenizer::token(TokenId id) const {
  if (id < 0 || id > 255) fail<DataError>("byte tokenizer: token {} is not a byte (vocab_size 256)", id);
  return std::string(1, static_cast<char>(static_cast<unsigned char>(id)));
}

// ---- UTF-8 -----------------------------------------------------------------------------

namespace {

/// Length of the well-formed UTF-8 sequence at s[i], or 0 and in `bad` the length of its
/// maximal ill-formed prefix (Unicode Table 3-7; at least 1).
std::size_t utf8_sequence(const unsigned char* s, std::size_t n, std::size_t i, std::size_t& bad) {
  const unsigned char b = s[i];
  std::size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) {
    len = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    len = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    len = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    bad = 1;
    return 0;
  }
  for (std::size_t k = 1; k < len; ++k) {
    const bool ok = i + k < n && s[i + k] >= (k == 1 ? lo : 0x80) && s[i + k] <= (k == 1 ? hi : 0xBF);
    if (!ok) {
      bad = k;
      return 0;
    }
  }
  return len;
}

}  // namespace

bool sanitize_utf8(std::string_view text, std::string& out) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0, bad = 0;
  // Most text is valid: find the first ill-formed byte without copying anything.
  while (i < n) {
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    const std::size_t len = utf8_sequence(s, n, i, bad);
    if (len == 0) break;
    i += len;
  }
  if (i == n) return false;
  out.assign(text.data(), i);
  while (i < n) {
    const std::size_t len = utf8_sequence(s, n, i, bad);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      i += bad;
    } else {
      out.append(text.data() + i, len);
      i += len;
    }
  }
  return true;
}

// ---- files and the factory -------------------------------------------------------------

namespace detail {

std::string read_file_bytes(const fs::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail<IoError>("{}: cannot open {} ({})", path.string(), what, std::strerror(errno));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail<IoError>("{}: read error", path.string());
  return s;
}

namespace {

/// A special token in tokenizer_config.json: a string, or an AddedToken object {"content": ...}.
SpecialTokenConfig::Field token_field(const nlohmann::json& j, const char* key, const fs::path& file) {
  const auto it = j.find(key);
  if (it == j.end()) return {};
  if (it->is_null()) return {true, std::nullopt};
  if (it->is_string()) return {true, it->get<std::string>()};
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return {true, (*it)["content"].get<std::string>()};
  fail<ConfigError>("{}: {} must be a string or an object with a string \"content\", got {}", file.string(),
                    key, io::json_brief(*it));
}

std::optional<bool> bool_field(const nlohmann::json& j, const char* key, const fs::path& file) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean())
    fail<ConfigError>("{}: {} must be true or false, got {}", file.string(), key, io::json_brief(*it));
  return it->get<bool>();
}

}  // namespace

SpecialTokenConfig read_special_token_config(const fs::path& dir) {
  // tokenizer_config.json first; special_tokens_map.json fills the keys it does not give.
  SpecialTokenConfig c;
  for (const char* name : {"tokenizer_config.json", "special_tokens_map.json"}) {
    const fs::path f = dir / name;
    if (!fs::is_regular_file(f)) continue;
    const auto j = nlohmann::json::parse(read_file_bytes(f, "tokenizer config"), nullptr, false);
    if (j.is_discarded() || !j.is_object()) fail<ConfigError>("{}: not a JSON object", f.string());
    if (c.file.empty()) c.file = f;
    for (const auto& [key, field] :
         {std::pair{"bos_token", &c.bos}, std::pair{"eos_token", &c.eos}, std::pair{"pad_token", &c.pad}})
      if (!field->given) *field = token_field(j, key, f);
    if (!c.add_bos) c.add_bos = bool_field(j, "add_bos_token", f);
    if (!c.add_eos) c.add_eos = bool_field(j, "add_eos_token", f);
  }
  return c;
}

}  // namespace detail

fs::path resolve_tokenizer_file(const fs::path& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return path;
  if (!fs::is_directory(path, ec))
    fail<ConfigError>(
        "tokenizer \"{}\": no such file or directory (give \"byte\", a tokenizer.json, "
        "tokenizer.model or encoder.json file, or a Hugging Face model directory)",
        path.string());
  for (const char* f : {"tokenizer.json", "tokenizer.model", "encoder.json", "vocab.json"})
    if (fs::is_regular_file(path / f)) {
      const std::string n = f;
      if (n == "encoder.json" && !fs::is_regular_file(path / "vocab.bpe"))
        fail<ConfigError>("tokenizer \"{}\": has encoder.json but no vocab.bpe beside it", path.string());
      if (n == "vocab.json" && !fs::is_regular_file(path / "merges.txt")) continue;
      return path / f;
    }
  fail<ConfigError>(
      "tokenizer \"{}\": the directory has no tokenizer.json, tokenizer.model, encoder.json + "
      "vocab.bpe or vocab.json + merges.txt",
      path.string());
}

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  std::error_code ec;
  if (!fs::exists(spec, ec)) {
    if (spec == "gpt2")
      fail<ConfigError>(
          "tokenizer = \"gpt2\": give the path of GPT-2's tokenizer files instead (a directory "
          "with tokenizer.json, or encoder.json + vocab.bpe); choices: byte or a path");
    fail<ConfigError>(
        "unknown tokenizer \"{}\": not \"byte\" and no such file or directory (choices: byte, a "
        "tokenizer.json / tokenizer.model / encoder.json file, or a Hugging Face model directory)",
        spec);
  }
  const fs::path file = resolve_tokenizer_file(spec);
  const std::string base = file.filename().string();
  const fs::path dir = file.parent_path();
  if (base == "encoder.json") return detail::load_gpt2_bpe(file, dir / "vocab.bpe", spec);
  if (base == "vocab.bpe") return detail::load_gpt2_bpe(dir / "encoder.json", file, spec);
  if (base == "vocab.json" && fs::is_regular_file(dir / "merges.txt"))
    return detail::load_gpt2_bpe(file, dir / "merges.txt", spec);
  if (base == "merges.txt") return detail::load_gpt2_bpe(dir / "vocab.json", file, spec);
  if (file.extension() == ".model") return detail::load_sentencepiece(file, spec);
  if (file.extension() == ".json") return detail::load_tokenizer_json(file, spec);
  fail<ConfigError>(
      "tokenizer \"{}\": {} is not a tokenizer file this flowlm reads (tokenizer.json, "
      "tokenizer.model, encoder.json + vocab.bpe)",
      spec, file.string());
}

}  // namespace flowlm::data
