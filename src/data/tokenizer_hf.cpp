// Hugging Face tokenizer.json (and GPT-2's encoder.json + vocab.bpe) with the semantics of the
// tokenizers library (0.20): added tokens split out first (leftmost-longest, raw then
// normalized), the normalizer and the pre-tokenizers on the other pieces, BPE per word
// (lowest-rank merge first, leftmost on ties), the post_processor's special tokens, and the
// decoder chain. Components this file does not implement are a ConfigError naming the key.
#include <utf8proc.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include "core/error.hpp"
#include "data/tokenizer_impl.hpp"
#include "data/unicode_regex.hpp"
#include "io/json_text.hpp"

namespace flowlm::data::detail {
namespace fs = std::filesystem;

namespace {

using json = nlohmann::json;
using io::json_brief;

// ---- JSON access: every message names the file and the key ------------------------------

struct Where {
  std::string file;
  [[noreturn]] void bad(const std::string& key, const std::string& msg) const {
    fail<ConfigError>("{}: {} {}", file, key, msg);
  }
};

const json& member(const Where& w, const json& obj, const std::string& path, const char* key) {
  if (!obj.is_object()) w.bad(path, fmt::format("must be an object, got {}", obj.type_name()));
  const auto it = obj.find(key);
  if (it == obj.end()) w.bad(path + "." + key, "is missing");
  return *it;
}

std::string get_string(const Where& w, const json& obj, const std::string& path, const char* key) {
  const json& v = member(w, obj, path, key);
  if (!v.is_string()) w.bad(path + "." + key, fmt::format("must be a string, got {}", json_brief(v)));
  return v.get<std::string>();
}

std::optional<std::string> get_opt_string(const Where& w, const json& obj, const std::string& path,
                                          const char* key) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_string())
    w.bad(path + "." + key, fmt::format("must be a string or null, got {}", json_brief(*it)));
  return it->get<std::string>();
}

bool get_bool(const Where& w, const json& obj, const std::string& path, const char* key, bool dflt) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return dflt;
  if (!it->is_boolean())
    w.bad(path + "." + key, fmt::format("must be true or false, got {}", json_brief(*it)));
  return it->get<bool>();
}

std::int64_t get_int(const Where& w, const json& obj, const std::string& path, const char* key,
                     std::int64_t dflt) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return dflt;
  if (!it->is_number_integer())
    w.bad(path + "." + key, fmt::format("must be an integer, got {}", json_brief(*it)));
  return it->get<std::int64_t>();
}

std::string type_of(const Where& w, const json& obj, const std::string& path) {
  return get_string(w, obj, path, "type");
}

[[noreturn]] void unsupported(const Where& w, const std::string& path, const std::string& type,
                              const char* supported) {
  w.bad(path + ".type", fmt::format("= \"{}\" is not supported by flowlm (supported: {})", type, supported));
}

// ---- UTF-8 and Unicode helpers (input is valid UTF-8) ------------------------------------

std::size_t char_len(unsigned char b) { return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4; }

char32_t decode_at(std::string_view s, std::size_t i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  if (p[0] < 0x80) return p[0];
  if (p[0] < 0xE0) return (char32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
  if (p[0] < 0xF0) return (char32_t(p[0] & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
  return (char32_t(p[0] & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) | (char32_t(p[2] & 0x3F) << 6) |
         (p[3] & 0x3F);
}

void append_utf8(std::string& s, char32_t c) {
  if (c < 0x80) {
    s.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (c >> 6)));
    s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    s.push_back(static_cast<char>(0xE0 | (c >> 12)));
    s.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xF0 | (c >> 18)));
    s.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

/// Unicode White_Space (Rust's char::is_whitespace and regex \s).
bool is_white_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/// The byte <-> character table of byte-level BPE (GPT-2's bytes_to_unicode): printable
/// Latin-1 bytes map to themselves, the others to U+0100 and up.
const std::array<char32_t, 256>& byte_to_char() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[static_cast<std::size_t>(b)] =
          printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
    }
    return t;
  }();
  return table;
}

/// The raw bytes a byte-level token string stands for; false if a character is not in the table.
bool byte_level_to_bytes(std::string_view token, std::string& out) {
  static const std::unordered_map<char32_t, unsigned char> inverse = [] {
    std::unordered_map<char32_t, unsigned char> m;
    for (int b = 0; b < 256; ++b)
      m[byte_to_char()[static_cast<std::size_t>(b)]] = static_cast<unsigned char>(b);
    return m;
  }();
  out.clear();
  for (std::size_t i = 0; i < token.size(); i += char_len(static_cast<unsigned char>(token[i]))) {
    const auto it = inverse.find(decode_at(token, i));
    if (it == inverse.end()) return false;
    out.push_back(static_cast<char>(it->second));
  }
  return true;
}

// ---- patterns (Split, Replace): a regex or a literal string --------------------------------

class Pattern {
 public:
  Pattern(const Where& w, const json& obj, const std::string& path) {
    const json& p = member(w, obj, path, "pattern");
    const std::string pp = path + ".pattern";
    if (p.is_object() && p.contains("Regex")) {
      regex_.emplace(get_string(w, p, pp, "Regex"), fmt::format("{}: {}.Regex", w.file, pp));
    } else if (p.is_object() && p.contains("String")) {
      literal_ = get_string(w, p, pp, "String");
      if (literal_.empty()) w.bad(pp + ".String", "must not be empty");
    } else {
      w.bad(pp, fmt::format("must be {{\"String\": ...}} or {{\"Regex\": ...}}, got {}", json_brief(p)));
    }
  }
  /// f(start, end) for each match, left to right, without overlaps.
  template <class F>
  void for_each_match(std::string_view s, F&& f) const {
    if (regex_) {
      regex_->for_each_match(s, f);
      return;
    }
    for (std::size_t at = s.find(literal_); at != std::string_view::npos; at = s.find(literal_, at)) {
      f(at, at + literal_.size());
      at += literal_.size();
    }
  }

 private:
  std::optional<UnicodeRegex> regex_;
  std::string literal_;
};

// ---- normalizers -------------------------------------------------------------------------

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void apply(std::string& s) const = 0;
};

class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string p) : prepend_(std::move(p)) {}
  void apply(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(const Where& w, const json& j, const std::string& path)
      : pattern_(w, j, path), content_(get_string(w, j, path, "content")) {}
  void apply(std::string& s) const override {
    std::string out;
    std::size_t last = 0;
    bool any = false;
    pattern_.for_each_match(s, [&](std::size_t b, std::size_t e) {
      any = true;
      out.append(s, last, b - last);
      out += content_;
      last = e;
    });
    if (!any) return;
    out.append(s, last, std::string::npos);
    s.swap(out);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class UnicodeNormalizer final : public Normalizer {
 public:
  UnicodeNormalizer(const std::string& form, const std::string& file) : form_(form), file_(file) {
    options_ = UTF8PROC_STABLE;
    if (form == "NFC") options_ |= UTF8PROC_COMPOSE;
    if (form == "NFD") options_ |= UTF8PROC_DECOMPOSE;
    if (form == "NFKC") options_ |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    if (form == "NFKD") options_ |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    // Text below U+0300 is NFC already (no composing character there); ASCII is every form.
    limit_ = form == "NFC" ? 0xCC : 0x80;
  }
  void apply(std::string& s) const override {
    if (std::all_of(s.begin(), s.end(), [&](char c) { return static_cast<unsigned char>(c) < limit_; }))
      return;
    utf8proc_uint8_t* out = nullptr;
    const auto n =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                     static_cast<utf8proc_ssize_t>(s.size()), &out, static_cast<utf8proc_option_t>(options_));
    if (n < 0) fail<DataError>("{}: normalizer {} failed: {}", file_, form_, utf8proc_errmsg(n));
    s.assign(reinterpret_cast<const char*>(out), static_cast<std::size_t>(n));
    std::free(out);
  }

 private:
  std::string form_, file_;
  int options_ = 0;
  unsigned limit_ = 0x80;
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void apply(std::string& s) const override {
    std::size_t b = 0, e = s.size();
    if (left_)
      while (b < e && is_white_space(decode_at(s, b))) b += char_len(static_cast<unsigned char>(s[b]));
    if (right_)
      while (e > b) {
        std::size_t p = e - 1;
        while (p > b && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
        if (!is_white_space(decode_at(s, p))) break;
        e = p;
      }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

void parse_normalizer(const Where& w, const json& j, const std::string& path,
                      std::vector<std::unique_ptr<Normalizer>>& out) {
  if (j.is_null()) return;
  const std::string t = type_of(w, j, path);
  if (t == "Sequence") {
    const json& list = member(w, j, path, "normalizers");
    if (!list.is_array()) w.bad(path + ".normalizers", "must be a list");
    for (std::size_t i = 0; i < list.size(); ++i)
      parse_normalizer(w, list[i], fmt::format("{}.normalizers[{}]", path, i), out);
  } else if (t == "Prepend") {
    out.push_back(std::make_unique<PrependNormalizer>(get_string(w, j, path, "prepend")));
  } else if (t == "Replace") {
    out.push_back(std::make_unique<ReplaceNormalizer>(w, j, path));
  } else if (t == "NFC" || t == "NFD" || t == "NFKC" || t == "NFKD") {
    out.push_back(std::make_unique<UnicodeNormalizer>(t, w.file));
  } else if (t == "Strip") {
    out.push_back(std::make_unique<StripNormalizer>(get_bool(w, j, path, "strip_left", true),
                                                    get_bool(w, j, path, "strip_right", true)));
  } else {
    unsupported(w, path, t, "Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Strip");
  }
}

// ---- pre-tokenizers ------------------------------------------------------------------------

/// Receives the pieces a pre-tokenizer produces. at_start: the piece begins the input text.
class Sink {
 public:
  virtual void piece(std::string_view s, bool at_start) = 0;

 protected:
  ~Sink() = default;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void split(std::string_view s, bool at_start, Sink& out) const = 0;
};

enum class Behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

Behavior parse_behavior(const Where& w, const json& j, const std::string& path) {
  const std::string b = get_string(w, j, path, "behavior");
  if (b == "Removed") return Behavior::removed;
  if (b == "Isolated") return Behavior::isolated;
  if (b == "MergedWithPrevious") return Behavior::merged_with_previous;
  if (b == "MergedWithNext") return Behavior::merged_with_next;
  if (b == "Contiguous") return Behavior::contiguous;
  w.bad(path + ".behavior",
        fmt::format(
            "= \"{}\" is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous", b));
}

struct Segment {
  std::size_t b, e;
  bool is_match;
};

/// tokenizers' NormalizedString::split: matches and the gaps between them, combined per behavior.
void emit_split(std::string_view s, bool at_start, std::vector<Segment>& seg, Behavior behavior, Sink& out) {
  std::vector<Segment> res;
  res.reserve(seg.size());
  bool prev = false;
  switch (behavior) {
    case Behavior::isolated:
    case Behavior::removed:
      res.swap(seg);
      break;
    case Behavior::contiguous:
      for (const auto& x : seg) {
        if (x.is_match == prev && !res.empty())
          res.back().e = x.e;
        else
          res.push_back({x.b, x.e, false});
        prev = x.is_match;
      }
      break;
    case Behavior::merged_with_previous:
      for (const auto& x : seg) {
        if (x.is_match && !prev && !res.empty())
          res.back().e = x.e;
        else
          res.push_back({x.b, x.e, false});
        prev = x.is_match;
      }
      break;
    case Behavior::merged_with_next:
      for (auto it = seg.rbegin(); it != seg.rend(); ++it) {
        if (it->is_match && !prev && !res.empty())
          res.back().b = it->b;
        else
          res.push_back({it->b, it->e, false});
        prev = it->is_match;
      }
      std::reverse(res.begin(), res.end());
      break;
  }
  for (const auto& x : res) {
    if (x.e == x.b || (behavior == Behavior::removed && x.is_match)) continue;
    out.piece(s.substr(x.b, x.e - x.b), at_start && x.b == 0);
  }
}

/// Matches and gaps of `pattern` in s (tokenizers' Pattern::find_matches), is_match flipped by invert.
template <class P>
void find_segments(const P& pattern, std::string_view s, bool invert, std::vector<Segment>& seg) {
  seg.clear();
  if (s.empty()) {
    seg.push_back({0, 0, invert});
    return;
  }
  std::size_t prev = 0;
  pattern.for_each_match(s, [&](std::size_t b, std::size_t e) {
    if (prev != b) seg.push_back({prev, b, invert});
    seg.push_back({b, e, !invert});
    prev = e;
  });
  if (prev != s.size()) seg.push_back({prev, s.size(), invert});
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(const Where& w, const json& j, const std::string& path)
      : pattern_(w, j, path),
        behavior_(parse_behavior(w, j, path)),
        invert_(get_bool(w, j, path, "invert", false)) {}
  void split(std::string_view s, bool at_start, Sink& out) const override {
    if (behavior_ == Behavior::isolated && !invert_) {  // the common case, without a segment list
      std::size_t prev = 0;
      pattern_.for_each_match(s, [&](std::size_t b, std::size_t e) {
        if (prev != b) out.piece(s.substr(prev, b - prev), at_start && prev == 0);
        if (e != b) out.piece(s.substr(b, e - b), at_start && b == 0);
        prev = e;
      });
      if (prev != s.size()) out.piece(s.substr(prev), at_start && prev == 0);
      return;
    }
    std::vector<Segment> seg;
    find_segments(pattern_, s, invert_, seg);
    emit_split(s, at_start, seg, behavior_, out);
  }

 private:
  Pattern pattern_;
  Behavior behavior_;
  bool invert_;
};

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

/// ByteLevel: optional leading space and the GPT-2 regex. It must come last: the pieces go on as
/// raw bytes and the model maps them through the byte table.
class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(const Where& w, const json& j, const std::string& path)
      : add_prefix_space_(get_bool(w, j, path, "add_prefix_space", true)) {
    if (get_bool(w, j, path, "use_regex", true))
      regex_.emplace(kGpt2Pattern, fmt::format("{}: {} (ByteLevel's GPT-2 regex)", w.file, path));
  }
  void split(std::string_view s, bool at_start, Sink& out) const override {
    std::string with_space;
    if (add_prefix_space_ && (s.empty() || s[0] != ' ')) {
      with_space.reserve(s.size() + 1);
      with_space.push_back(' ');
      with_space.append(s);
      s = with_space;
    }
    if (!regex_) {
      if (!s.empty()) out.piece(s, at_start);
      return;
    }
    std::size_t prev = 0;
    regex_->for_each_match(s, [&](std::size_t b, std::size_t e) {
      if (prev != b) out.piece(s.substr(prev, b - prev), at_start && prev == 0);
      if (e != b) out.piece(s.substr(b, e - b), at_start && b == 0);
      prev = e;
    });
    if (prev != s.size()) out.piece(s.substr(prev), at_start && prev == 0);
  }

 private:
  bool add_prefix_space_;
  std::optional<UnicodeRegex> regex_;
};

enum class Prepend { always, first, never };

Prepend parse_prepend_scheme(const Where& w, const json& j, const std::string& path) {
  if (j.contains("prepend_scheme")) {
    const std::string p = get_string(w, j, path, "prepend_scheme");
    if (p == "always") return Prepend::always;
    if (p == "first") return Prepend::first;
    if (p == "never") return Prepend::never;
    w.bad(path + ".prepend_scheme", fmt::format("= \"{}\" is not one of always, first, never", p));
  }
  // Files written before tokenizers 0.15 say add_prefix_space instead.
  return get_bool(w, j, path, "add_prefix_space", true) ? Prepend::always : Prepend::never;
}

std::string parse_replacement(const Where& w, const json& j, const std::string& path) {
  std::string r = get_string(w, j, path, "replacement");
  if (r.empty() || char_len(static_cast<unsigned char>(r[0])) != r.size())
    w.bad(path + ".replacement", fmt::format("= \"{}\" must be one character", r));
  return r;
}

/// Metaspace: spaces -> the replacement character ("▁"), prepended per prepend_scheme, then
/// (split = true) a piece per word, the "▁" starting each.
class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  MetaspacePreTokenizer(const Where& w, const json& j, const std::string& path)
      : replacement_(parse_replacement(w, j, path)),
        prepend_(parse_prepend_scheme(w, j, path)),
        split_(get_bool(w, j, path, "split", true)) {}
  void split(std::string_view s, bool at_start, Sink& out) const override {
    std::string t;
    t.reserve(s.size() + 8);
    for (const char c : s) {
      if (c == ' ')
        t += replacement_;
      else
        t.push_back(c);
    }
    const bool starts = t.compare(0, replacement_.size(), replacement_) == 0;
    if (!starts && (prepend_ == Prepend::always || (prepend_ == Prepend::first && at_start)))
      t.insert(0, replacement_);
    if (!split_) {
      if (!t.empty()) out.piece(t, at_start);
      return;
    }
    // MergedWithNext on each replacement character: a piece starts at every "▁".
    std::size_t begin = 0;
    for (std::size_t at = t.find(replacement_, 1); at != std::string::npos;
         at = t.find(replacement_, at + 1)) {
      out.piece(std::string_view(t).substr(begin, at - begin), at_start && begin == 0);
      begin = at;
    }
    if (begin < t.size()) out.piece(std::string_view(t).substr(begin), at_start && begin == 0);
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

/// Digits: numbers apart from the rest, each digit alone (individual_digits) or in runs.
class DigitsPreTokenizer final : public PreTokenizer {
 public:
  DigitsPreTokenizer(const Where& w, const json& j, const std::string& path)
      : individual_(get_bool(w, j, path, "individual_digits", false)),
        regex_(R"(\p{N})", fmt::format("{}: {}", w.file, path)) {}
  void split(std::string_view s, bool at_start, Sink& out) const override {
    std::vector<Segment> seg;
    find_segments(regex_, s, false, seg);
    emit_split(s, at_start, seg, individual_ ? Behavior::isolated : Behavior::contiguous, out);
  }

 private:
  bool individual_;
  UnicodeRegex regex_;
};

void parse_pre_tokenizer(const Where& w, const json& j, const std::string& path,
                         std::vector<std::unique_ptr<PreTokenizer>>& out, bool& byte_level) {
  if (j.is_null()) return;
  const std::string t = type_of(w, j, path);
  if (byte_level)
    w.bad(path + ".type", fmt::format("= \"{}\" follows ByteLevel; flowlm needs ByteLevel last", t));
  if (t == "Sequence") {
    const json& list = member(w, j, path, "pretokenizers");
    if (!list.is_array()) w.bad(path + ".pretokenizers", "must be a list");
    for (std::size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(w, list[i], fmt::format("{}.pretokenizers[{}]", path, i), out, byte_level);
  } else if (t == "ByteLevel") {
    out.push_back(std::make_unique<ByteLevelPreTokenizer>(w, j, path));
    byte_level = true;
  } else if (t == "Split") {
    out.push_back(std::make_unique<SplitPreTokenizer>(w, j, path));
  } else if (t == "Metaspace") {
    out.push_back(std::make_unique<MetaspacePreTokenizer>(w, j, path));
  } else if (t == "Digits") {
    out.push_back(std::make_unique<DigitsPreTokenizer>(w, j, path));
  } else {
    unsupported(w, path, t, "Sequence, ByteLevel, Split, Metaspace, Digits");
  }
}

// ---- the BPE model -------------------------------------------------------------------------

class BpeModel {
 public:
  BpeModel(const Where& w, const json& m, bool byte_units) : byte_units_(byte_units) {
    const std::string path = "model";
    if (m.contains("type")) {
      const std::string t = type_of(w, m, path);
      if (t != "BPE") unsupported(w, path, t, "BPE");
    } else if (!m.contains("merges")) {
      w.bad(path + ".type", "is missing");
    }
    if (m.contains("dropout") && !m["dropout"].is_null() &&
        !(m["dropout"].is_number() && m["dropout"].get<double>() == 0.0))
      w.bad(path + ".dropout",
            fmt::format("= {}: BPE dropout is not supported (tokenization would be random)",
                        json_brief(m["dropout"])));
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (const auto v = get_opt_string(w, m, path, k); v && !v->empty())
        w.bad(path + "." + k, fmt::format("= \"{}\" is not supported by flowlm", *v));
    fuse_unk_ = get_bool(w, m, path, "fuse_unk", false);
    byte_fallback_ = get_bool(w, m, path, "byte_fallback", false);
    ignore_merges_ = get_bool(w, m, path, "ignore_merges", false);

    const json& vocab = member(w, m, path, "vocab");
    if (!vocab.is_object()) w.bad(path + ".vocab", "must be an object {token: id}");
    vocab_.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 ||
          it.value().get<std::int64_t>() > 0x7FFFFFFF)
        w.bad(fmt::format("{}.vocab[\"{}\"]", path, it.key()),
              fmt::format("must be a non-negative integer id, got {}", json_brief(it.value())));
      const auto id = static_cast<TokenId>(it.value().get<std::int64_t>());
      vocab_[it.key()] = id;
      // Ids may leave gaps (a hostile file: one id of 2^31 - 1), so id -> token is a map, sized by
      // the entries rather than by the largest id.
      id_to_token_[id] = it.key();
      size_ = std::max<index_t>(size_, index_t{id} + 1);
    }

    // The units words are made of: raw bytes (byte-level) or characters.
    std::string raw;
    if (byte_units_) {
      for (const auto& [tok, id] : vocab_)
        if (byte_level_to_bytes(tok, raw)) unit_vocab_[raw] = id;
      for (int b = 0; b < 256; ++b) {
        std::string c;
        append_utf8(c, byte_to_char()[static_cast<std::size_t>(b)]);
        const auto it = vocab_.find(c);
        byte_id_[static_cast<std::size_t>(b)] = it == vocab_.end() ? -1 : it->second;
      }
    } else {
      for (const auto& [tok, id] : vocab_)
        if (!tok.empty() && char_len(static_cast<unsigned char>(tok[0])) == tok.size())
          char_id_[decode_at(tok, 0)] = id;
    }
    for (int b = 0; b < 256; ++b) {
      const auto it = vocab_.find(fmt::format("<0x{:02X}>", b));
      fallback_id_[static_cast<std::size_t>(b)] = it == vocab_.end() ? -1 : it->second;
    }
    if (const auto unk = get_opt_string(w, m, path, "unk_token")) {
      const auto it = vocab_.find(*unk);
      if (it == vocab_.end()) w.bad(path + ".unk_token", fmt::format("= \"{}\" is not in model.vocab", *unk));
      unk_id_ = it->second;
    }

    const json& merges = member(w, m, path, "merges");
    if (!merges.is_array()) w.bad(path + ".merges", "must be a list");
    merges_.reserve(merges.size() * 2);
    for (std::size_t r = 0; r < merges.size(); ++r) {
      const json& mj = merges[r];
      const std::string key = fmt::format("{}.merges[{}]", path, r);
      std::string a, b;
      if (mj.is_string()) {
        const std::string s = mj.get<std::string>();
        const auto sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          w.bad(key, fmt::format("= \"{}\" must be two tokens separated by one space", s));
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string()) {
        a = mj[0].get<std::string>();
        b = mj[1].get<std::string>();
      } else {
        w.bad(key, fmt::format("must be \"a b\" or [\"a\", \"b\"], got {}", json_brief(mj)));
      }
      const auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
      for (const auto& [it, s] : {std::pair{ia, a}, std::pair{ib, b}, std::pair{iab, a + b}})
        if (it == vocab_.end()) w.bad(key, fmt::format("names \"{}\", which is not in model.vocab", s));
      merges_[pair_key(ia->second, ib->second)] = {static_cast<std::int32_t>(r), iab->second};
    }
  }

  index_t size() const { return size_; }
  bool has(TokenId id) const { return id_to_token_.count(id) != 0; }
  const std::string& token(TokenId id) const { return id_to_token_.at(id); }
  std::optional<TokenId> find(const std::string& token) const {
    const auto it = vocab_.find(token);
    return it == vocab_.end() ? std::nullopt : std::optional<TokenId>(it->second);
  }

  /// The ids of one word (a pre-tokenizer piece), appended to out.
  void encode_word(std::string_view w, std::vector<TokenId>& out) const {
    if (w.empty()) return;
    if (ignore_merges_) {
      const auto& vocab = byte_units_ ? unit_vocab_ : vocab_;
      if (const auto it = vocab.find(std::string(w)); it != vocab.end()) {
        out.push_back(it->second);
        return;
      }
    }
    const bool cacheable = w.size() <= kCacheMaxWord;
    if (cacheable) {
      key_.assign(w.data(), w.size());
      if (const auto it = cache_.find(key_); it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const std::size_t first = out.size();
    merge_word(w, out);
    if (cacheable) {
      if (cache_.size() >= kCacheMaxEntries) cache_.clear();
      cache_.emplace(std::string(w),
                     std::vector<TokenId>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
    }
  }

 private:
  static constexpr std::size_t kCacheMaxWord = 256;
  static constexpr std::size_t kCacheMaxEntries = 1 << 17;

  static std::uint64_t pair_key(TokenId a, TokenId b) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  }

  struct Symbol {
    TokenId id;
    std::int32_t prev, next;
    bool alive;
  };
  struct Merge {
    std::int32_t rank, pos;
    TokenId new_id;
    bool operator<(const Merge& o) const {  // priority_queue pops the largest: lowest rank, then leftmost
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };

  /// One unit (a byte or a character) that is not in the vocabulary: byte fallback, else unk.
  void add_missing(std::string_view unit, std::optional<std::size_t>& pending_unk) const {
    if (byte_fallback_) {
      bool all = true;
      for (const char c : unit) all = all && fallback_id_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (const char c : unit) push_symbol(fallback_id_[static_cast<unsigned char>(c)]);
        return;
      }
    }
    if (!unk_id_)
      fail<DataError>(
          "the text has \"{}\", which the vocabulary lacks, and the model has no unk_token or byte "
          "fallback",
          std::string(unit));
    if (pending_unk && fuse_unk_) return;
    if (pending_unk) push_symbol(*unk_id_);
    pending_unk = symbols_.size();
  }

  void push_symbol(TokenId id) const {
    const auto n = static_cast<std::int32_t>(symbols_.size());
    symbols_.push_back({id, n - 1, n + 1, true});
  }

  void merge_word(std::string_view w, std::vector<TokenId>& out) const {
    symbols_.clear();
    std::optional<std::size_t> pending_unk;  // an unk waiting to be placed (fuse_unk joins runs)
    const auto flush_unk = [&] {
      if (pending_unk) push_symbol(*unk_id_);
      pending_unk.reset();
    };
    std::string mapped;
    for (std::size_t i = 0; i < w.size();) {
      TokenId id = -1;
      std::size_t len = 1;
      if (byte_units_) {
        id = byte_id_[static_cast<unsigned char>(w[i])];
        if (id < 0) {
          mapped.clear();
          append_utf8(mapped, byte_to_char()[static_cast<unsigned char>(w[i])]);
        }
      } else {
        len = char_len(static_cast<unsigned char>(w[i]));
        const auto it = char_id_.find(decode_at(w, i));
        if (it != char_id_.end()) id = it->second;
      }
      if (id >= 0) {
        flush_unk();
        push_symbol(id);
      } else {
        add_missing(byte_units_ ? std::string_view(mapped) : w.substr(i, len), pending_unk);
      }
      i += len;
    }
    flush_unk();
    if (symbols_.empty()) return;
    symbols_.back().next = -1;

    // Word::merge_all of the tokenizers library.
    heap_.clear();
    for (std::size_t i = 0; i + 1 < symbols_.size(); ++i)
      if (const auto it = merges_.find(pair_key(symbols_[i].id, symbols_[i + 1].id)); it != merges_.end())
        heap_.push_back({it->second.first, static_cast<std::int32_t>(i), it->second.second});
    std::make_heap(heap_.begin(), heap_.end());
    while (!heap_.empty()) {
      std::pop_heap(heap_.begin(), heap_.end());
      const Merge top = heap_.back();
      heap_.pop_back();
      Symbol& cur = symbols_[static_cast<std::size_t>(top.pos)];
      if (!cur.alive || cur.next < 0) continue;
      const Symbol right = symbols_[static_cast<std::size_t>(cur.next)];
      const auto it = merges_.find(pair_key(cur.id, right.id));
      if (it == merges_.end() || it->second.second != top.new_id) continue;  // an expired entry
      symbols_[static_cast<std::size_t>(cur.next)].alive = false;
      cur.id = top.new_id;
      cur.next = right.next;
      if (right.next >= 0) symbols_[static_cast<std::size_t>(right.next)].prev = top.pos;
      const auto push = [&](std::int32_t pos, TokenId a, TokenId b) {
        if (const auto m = merges_.find(pair_key(a, b)); m != merges_.end()) {
          heap_.push_back({m->second.first, pos, m->second.second});
          std::push_heap(heap_.begin(), heap_.end());
        }
      };
      if (cur.prev >= 0) push(cur.prev, symbols_[static_cast<std::size_t>(cur.prev)].id, cur.id);
      if (cur.next >= 0) push(top.pos, cur.id, symbols_[static_cast<std::size_t>(cur.next)].id);
    }
    for (const auto& s : symbols_)
      if (s.alive) out.push_back(s.id);
  }

  bool byte_units_;
  bool fuse_unk_ = false, byte_fallback_ = false, ignore_merges_ = false;
  std::unordered_map<std::string, TokenId> vocab_;       // token string -> id
  std::unordered_map<std::string, TokenId> unit_vocab_;  // byte-level: raw bytes -> id
  std::unordered_map<char32_t, TokenId> char_id_;        // single-character tokens
  std::array<TokenId, 256> byte_id_{}, fallback_id_{};
  std::unordered_map<TokenId, std::string> id_to_token_;
  index_t size_ = 0;  // one more than the largest id
  std::optional<TokenId> unk_id_;
  std::unordered_map<std::uint64_t, std::pair<std::int32_t, TokenId>> merges_;  // (a, b) -> (rank, a+b)
  // Scratch space and the word cache: encode is not thread-safe.
  mutable std::vector<Symbol> symbols_;
  mutable std::vector<Merge> heap_;
  mutable std::string key_;
  mutable std::unordered_map<std::string, std::vector<TokenId>> cache_;
};

// ---- added tokens ---------------------------------------------------------------------------

struct AddedToken {
  std::string content;
  TokenId id = 0;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = true;
};

/// Leftmost-longest matching of a set of strings (the tokenizers library's Aho-Corasick).
class TokenMatcher {
 public:
  void add(const std::string& pattern, std::size_t token) {
    if (pattern.empty()) return;
    std::int32_t node = 0;
    for (const char c : pattern) {
      const auto key = edge(node, static_cast<unsigned char>(c));
      auto it = edges_.find(key);
      if (it == edges_.end()) {
        it = edges_.emplace(key, static_cast<std::int32_t>(terminal_.size())).first;
        terminal_.push_back(-1);
      }
      node = it->second;
    }
    terminal_[static_cast<std::size_t>(node)] = static_cast<std::int64_t>(token);
    first_[static_cast<unsigned char>(pattern[0])] = true;
    any_ = true;
  }
  bool empty() const { return !any_; }
  /// The longest pattern starting at s[i]: its length and token index, or length 0.
  std::size_t longest_at(std::string_view s, std::size_t i, std::size_t& token) const {
    if (!first_[static_cast<unsigned char>(s[i])]) return 0;
    std::int32_t node = 0;
    std::size_t best = 0;
    for (std::size_t k = i; k < s.size(); ++k) {
      const auto it = edges_.find(edge(node, static_cast<unsigned char>(s[k])));
      if (it == edges_.end()) break;
      node = it->second;
      if (terminal_[static_cast<std::size_t>(node)] >= 0) {
        best = k + 1 - i;
        token = static_cast<std::size_t>(terminal_[static_cast<std::size_t>(node)]);
      }
    }
    return best;
  }

 private:
  static std::uint64_t edge(std::int32_t node, unsigned char c) {
    return (static_cast<std::uint64_t>(node) << 8) | c;
  }
  std::unordered_map<std::uint64_t, std::int32_t> edges_;
  std::vector<std::int64_t> terminal_{-1};  // node -> token index, -1 if none; node 0 is the root
  std::array<bool, 256> first_{};
  bool any_ = false;
};

// ---- post-processors and decoders ------------------------------------------------------------

struct Framing {
  std::vector<TokenId> prefix, suffix;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void apply(std::vector<std::string>& tokens) const = 0;
};

class ByteLevelDecoder final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string bytes, raw;
    for (const auto& t : tokens) {
      if (byte_level_to_bytes(t, raw))
        bytes += raw;
      else
        bytes += t;  // a token with characters outside the byte table stands for itself
    }
    std::string fixed;
    tokens.assign(1, sanitize_utf8(bytes, fixed) ? fixed : bytes);
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(const Where& w, const json& j, const std::string& path)
      : replacement_(parse_replacement(w, j, path)), prepend_(parse_prepend_scheme(w, j, path)) {}
  void apply(std::vector<std::string>& tokens) const override {
    // As tokenizers 0.20: every replacement character of the first token is dropped (when the
    // encoder prepends one), the others become spaces.
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      std::string out;
      const std::string& t = tokens[i];
      for (std::size_t at = 0;;) {
        const std::size_t hit = t.find(replacement_, at);
        out.append(t, at, hit == std::string::npos ? std::string::npos : hit - at);
        if (hit == std::string::npos) break;
        if (!(i == 0 && prepend_ != Prepend::never)) out.push_back(' ');
        at = hit + replacement_.size();
      }
      tokens[i].swap(out);
    }
  }

 private:
  std::string replacement_;
  Prepend prepend_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(const Where& w, const json& j, const std::string& path) : replace_(w, j, path) {}
  void apply(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) replace_.apply(t);
  }

 private:
  ReplaceNormalizer replace_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    const auto flush = [&] {
      if (bytes.empty()) return;
      std::string fixed;
      if (!sanitize_utf8(bytes, fixed))
        out.push_back(bytes);
      else
        for (std::size_t i = 0; i < bytes.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      bytes.clear();
    };
    for (auto& t : tokens) {
      int byte = -1;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
          std::isxdigit(static_cast<unsigned char>(t[3])) && std::isxdigit(static_cast<unsigned char>(t[4])))
        byte = std::stoi(t.substr(3, 2), nullptr, 16);
      if (byte >= 0) {
        bytes.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens.swap(out);
  }
};

class FuseDecoder final : public Decoder {
 public:
  void apply(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, all);
  }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(const Where& w, const json& j, const std::string& path)
      : start_(get_int(w, j, path, "start", 0)), stop_(get_int(w, j, path, "stop", 0)) {
    const std::string c = get_string(w, j, path, "content");
    if (c.empty() || char_len(static_cast<unsigned char>(c[0])) != c.size())
      w.bad(path + ".content", fmt::format("= \"{}\" must be one character", c));
    content_ = decode_at(c, 0);
  }
  void apply(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::size_t> at;  // byte offset of every character, and the end
      for (std::size_t i = 0; i < t.size(); i += char_len(static_cast<unsigned char>(t[i]))) at.push_back(i);
      const std::size_t n = at.size();
      at.push_back(t.size());
      std::size_t b = 0, e = n;
      for (std::size_t i = 0;
           i < n && static_cast<std::int64_t>(i) < start_ && decode_at(t, at[i]) == content_; ++i)
        b = i + 1;
      for (std::int64_t i = 0; i < stop_ && static_cast<std::size_t>(i) < n; ++i) {
        const std::size_t idx = n - 1 - static_cast<std::size_t>(i);
        if (decode_at(t, at[idx]) != content_) break;
        e = idx;
      }
      t = b < e ? t.substr(at[b], at[e] - at[b]) : std::string();
    }
  }

 private:
  std::int64_t start_, stop_;
  char32_t content_ = 0;
};

void parse_decoder(const Where& w, const json& j, const std::string& path,
                   std::vector<std::unique_ptr<Decoder>>& out) {
  if (j.is_null()) return;
  const std::string t = type_of(w, j, path);
  if (t == "Sequence") {
    const json& list = member(w, j, path, "decoders");
    if (!list.is_array()) w.bad(path + ".decoders", "must be a list");
    for (std::size_t i = 0; i < list.size(); ++i)
      parse_decoder(w, list[i], fmt::format("{}.decoders[{}]", path, i), out);
  } else if (t == "ByteLevel") {
    out.push_back(std::make_unique<ByteLevelDecoder>());
  } else if (t == "Metaspace") {
    out.push_back(std::make_unique<MetaspaceDecoder>(w, j, path));
  } else if (t == "Replace") {
    out.push_back(std::make_unique<ReplaceDecoder>(w, j, path));
  } else if (t == "ByteFallback") {
    out.push_back(std::make_unique<ByteFallbackDecoder>());
  } else if (t == "Fuse") {
    out.push_back(std::make_unique<FuseDecoder>());
  } else if (t == "Strip") {
    out.push_back(std::make_unique<StripDecoder>(w, j, path));
  } else {
    unsupported(w, path, t, "Sequence, ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip");
  }
}

// ---- the tokenizer ----------------------------------------------------------------------------

class HfTokenizer final : public Tokenizer {
 public:
  HfTokenizer(const json& j, const Where& w, std::string name, std::string kind, const fs::path& dir)
      : name_(std::move(name)), kind_(std::move(kind)) {
    if (!j.is_object()) w.bad("(top level)", "must be a JSON object");
    if (!j.contains("model")) w.bad("model", "is missing (a Hugging Face tokenizer.json is expected)");
    if (j.contains("normalizer")) parse_normalizer(w, j["normalizer"], "normalizer", normalizers_);
    bool byte_level = false;
    if (j.contains("pre_tokenizer"))
      parse_pre_tokenizer(w, j["pre_tokenizer"], "pre_tokenizer", pre_, byte_level);
    model_ = std::make_unique<BpeModel>(w, j["model"], byte_level);
    if (j.contains("decoder")) parse_decoder(w, j["decoder"], "decoder", decoders_);
    has_decoder_ = j.contains("decoder") && !j["decoder"].is_null();
    parse_added_tokens(w, j);
    vocab_size_ = model_->size();
    for (const auto& t : added_) vocab_size_ = std::max<index_t>(vocab_size_, t.id + 1);
    if (j.contains("post_processor"))
      framing_ = parse_post_processor(w, j["post_processor"], "post_processor");
    pick_special_tokens(dir);
  }

  std::string name() const override { return name_; }
  std::string kind() const override { return kind_; }
  index_t vocab_size() const override { return vocab_size_; }
  std::optional<TokenId> bos() const override { return bos_; }
  std::optional<TokenId> eos() const override { return eos_; }
  std::optional<TokenId> pad() const override { return pad_; }
  std::vector<TokenId> special_prefix() const override { return framing_.prefix; }
  std::vector<TokenId> special_suffix() const override { return framing_.suffix; }

  std::string token(TokenId id) const override {
    if (const auto it = added_by_id_.find(id); it != added_by_id_.end()) return added_[it->second].content;
    if (!model_->has(id))
      fail<DataError>("tokenizer {}: token id {} is not in the vocabulary (vocab_size {})", name_, id,
                      vocab_size_);
    return model_->token(id);
  }

  std::vector<TokenId> encode(std::string_view text, bool add_special) const override {
    std::vector<TokenId> out;
    if (add_special) out = framing_.prefix;
    walk(
        text, [&](TokenId id) { out.push_back(id); },
        [&](std::string_view word) { model_->encode_word(word, out); });
    if (add_special) out.insert(out.end(), framing_.suffix.begin(), framing_.suffix.end());
    return out;
  }

  std::vector<std::string> pre_tokenize(std::string_view text) const override {
    std::vector<std::string> out;
    walk(
        text, [&](TokenId id) { out.push_back(token(id)); },
        [&](std::string_view word) { out.emplace_back(word); });
    return out;
  }

  std::string decode(const std::vector<TokenId>& ids, bool skip_special) const override {
    std::vector<std::string> toks;
    toks.reserve(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i) {
      const TokenId id = ids[i];
      if (const auto it = added_by_id_.find(id); it != added_by_id_.end()) {
        if (!(skip_special && added_[it->second].special)) toks.push_back(added_[it->second].content);
        continue;
      }
      if (!model_->has(id))
        fail<DataError>("tokenizer {}: token {} at index {} is not in the vocabulary (vocab_size {})", name_,
                        id, i, vocab_size_);
      toks.push_back(model_->token(id));
    }
    if (!has_decoder_) {  // the tokenizers library joins with spaces when there is no decoder
      std::string out;
      for (std::size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
      return out;
    }
    for (const auto& d : decoders_) d->apply(toks);
    std::string out;
    for (const auto& t : toks) out += t;
    return out;
  }

 private:
  /// The encoding pipeline: added(id) for each added token, word(piece) for each piece the model
  /// tokenizes, in text order.
  template <class Added, class Word>
  void walk(std::string_view text, Added&& added, Word&& word) const {
    std::string fixed;
    if (sanitize_utf8(text, fixed)) text = fixed;
    const auto pre = [&](std::string_view p, bool at_start) { pre_tokenize_piece(p, at_start, word); };
    split_added(text, raw_matcher_, true, added, [&](std::string_view piece, bool at_start) {
      if (normalizers_.empty()) {
        split_added(piece, normalized_matcher_, at_start, added, pre);
        return;
      }
      std::string n(piece);
      for (const auto& nz : normalizers_) nz->apply(n);
      split_added(n, normalized_matcher_, at_start, added, pre);
    });
  }

  /// Splits s on the matcher's added tokens (AddedVocabulary::find_matches): added(id) for each,
  /// rest(piece, at_start) for the text between them.
  template <class Added, class Rest>
  void split_added(std::string_view s, const TokenMatcher& m, bool at_start, Added& added,
                   Rest&& rest) const {
    if (m.empty()) {
      if (!s.empty()) rest(s, at_start);
      return;
    }
    std::size_t done = 0;  // start_offset: end of the last added token
    for (std::size_t i = 0; i < s.size();) {
      std::size_t idx = 0;
      const std::size_t len = m.longest_at(s, i, idx);
      if (len == 0) {
        ++i;
        continue;
      }
      const AddedToken& t = added_[idx];
      std::size_t b = i, e = i + len;
      i = e;
      if (t.single_word && !(is_word_boundary(s, b, false) && is_word_boundary(s, e, true))) continue;
      if (t.lstrip) {
        std::size_t nb = b;
        while (nb > done) {
          std::size_t p = nb - 1;
          while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
          if (!is_white_space(decode_at(s, p))) break;
          nb = p;
        }
        b = std::max(nb, done);
      }
      if (t.rstrip)
        while (e < s.size() && is_white_space(decode_at(s, e)))
          e += char_len(static_cast<unsigned char>(s[e]));
      if (done < b) rest(s.substr(done, b - done), at_start && done == 0);
      added(t.id);
      done = e;
      i = std::max(i, e);
    }
    if (done < s.size()) rest(s.substr(done), at_start && done == 0);
  }

  /// No word character (\w) on the given side of position `at` (or the string ends there).
  bool is_word_boundary(std::string_view s, std::size_t at, bool after) const {
    if (after ? at >= s.size() : at == 0) return true;
    std::size_t p = at;
    if (!after) {
      p = at - 1;
      while (p > 0 && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
    }
    std::size_t b = 0, e = 0;
    return !(word_char_.search(s.substr(p, char_len(static_cast<unsigned char>(s[p]))), 0, b, e));
  }

  /// Runs the pre-tokenizer chain on one piece; word(w) for each resulting word.
  template <class Word>
  void pre_tokenize_piece(std::string_view s, bool at_start, Word& word) const {
    struct Stage final : Sink {
      const HfTokenizer& t;
      std::size_t level;
      Word& word;
      Stage(const HfTokenizer& tk, std::size_t l, Word& w) : t(tk), level(l), word(w) {}
      void piece(std::string_view p, bool start) override {
        if (level == t.pre_.size()) {
          word(p);
          return;
        }
        Stage next(t, level + 1, word);
        t.pre_[level]->split(p, start, next);
      }
    };
    if (s.empty()) return;
    Stage first(*this, 0, word);
    first.piece(s, at_start);
  }

  void parse_added_tokens(const Where& w, const json& j) {
    if (!j.contains("added_tokens") || j["added_tokens"].is_null()) return;
    const json& list = j["added_tokens"];
    if (!list.is_array()) w.bad("added_tokens", "must be a list");
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string path = fmt::format("added_tokens[{}]", i);
      AddedToken t;
      t.content = get_string(w, list[i], path, "content");
      const auto id = get_int(w, list[i], path, "id", -1);
      if (id < 0 || id > 0x7FFFFFFF) w.bad(path + ".id", "must be a non-negative integer");
      t.id = static_cast<TokenId>(id);
      t.special = get_bool(w, list[i], path, "special", false);
      t.single_word = get_bool(w, list[i], path, "single_word", false);
      t.lstrip = get_bool(w, list[i], path, "lstrip", false);
      t.rstrip = get_bool(w, list[i], path, "rstrip", false);
      t.normalized = get_bool(w, list[i], path, "normalized", !t.special);
      if (t.content.empty()) continue;
      added_by_id_[t.id] = added_.size();
      added_.push_back(t);
    }
    for (std::size_t i = 0; i < added_.size(); ++i) {
      const AddedToken& t = added_[i];
      if (!t.normalized) {
        raw_matcher_.add(t.content, i);
        continue;
      }
      std::string n = t.content;  // normalized tokens match their normalized form
      for (const auto& nz : normalizers_) nz->apply(n);
      normalized_matcher_.add(n, i);
    }
  }

  std::optional<TokenId> lookup(const std::string& token) const {
    for (const auto& t : added_)
      if (t.content == token) return t.id;
    return model_->find(token);
  }

  std::optional<TokenId> require_token(const json& name, const Where& w, const std::string& path) const {
    if (!name.is_string()) w.bad(path, fmt::format("must be a token string, got {}", json_brief(name)));
    const auto id = lookup(name.get<std::string>());
    if (!id) w.bad(path, fmt::format("= \"{}\" is not a token of this tokenizer", name.get<std::string>()));
    return id;
  }

  /// A post-processor's token id: it must name a token of this tokenizer (added or in the model's
  /// vocabulary), or encode(text, true) would hand the model an id outside the vocabulary.
  TokenId special_id(const Where& w, const json& x, const std::string& key) const {
    if (!x.is_number_integer() || x.get<std::int64_t>() < 0 || x.get<std::int64_t>() > 0x7FFFFFFF)
      w.bad(key, fmt::format("must hold token ids, got {}", json_brief(x)));
    const auto id = static_cast<TokenId>(x.get<std::int64_t>());
    if (added_by_id_.count(id) == 0 && !model_->has(id))
      w.bad(key,
            fmt::format("holds {}, which is not a token of this tokenizer (vocab_size {})", id, vocab_size_));
    return id;
  }

  Framing parse_post_processor(const Where& w, const json& j, const std::string& path) const {
    Framing f;
    if (j.is_null()) return f;
    const std::string t = type_of(w, j, path);
    if (t == "ByteLevel") return f;
    if (t == "Sequence") {
      const json& list = member(w, j, path, "processors");
      if (!list.is_array()) w.bad(path + ".processors", "must be a list");
      for (std::size_t i = 0; i < list.size(); ++i) {
        const Framing g = parse_post_processor(w, list[i], fmt::format("{}.processors[{}]", path, i));
        f.prefix.insert(f.prefix.begin(), g.prefix.begin(), g.prefix.end());
        f.suffix.insert(f.suffix.end(), g.suffix.begin(), g.suffix.end());
      }
      return f;
    }
    if (t == "RobertaProcessing" || t == "BertProcessing") {
      for (const char* k : {"cls", "sep"}) {
        const json& v = member(w, j, path, k);
        if (!v.is_array() || v.size() != 2 || !v[1].is_number_integer())
          w.bad(path + "." + k, fmt::format("must be [token, id], got {}", json_brief(v)));
        (std::string(k) == "cls" ? f.prefix : f.suffix).push_back(special_id(w, v[1], path + "." + k));
      }
      return f;
    }
    if (t != "TemplateProcessing")
      unsupported(w, path, t, "ByteLevel, TemplateProcessing, RobertaProcessing, BertProcessing, Sequence");
    const json& single = member(w, j, path, "single");
    const json& specials = member(w, j, path, "special_tokens");
    if (!single.is_array()) w.bad(path + ".single", "must be a list");
    bool seen_a = false;
    for (std::size_t i = 0; i < single.size(); ++i) {
      const std::string p = fmt::format("{}.single[{}]", path, i);
      const json& item = single[i];
      if (item.is_object() && item.contains("Sequence")) {
        const std::string id = get_string(w, item["Sequence"], p + ".Sequence", "id");
        if (id != "A" || seen_a)
          w.bad(p + ".Sequence.id", fmt::format("= \"{}\": a single template holds $A once", id));
        seen_a = true;
      } else if (item.is_object() && item.contains("SpecialToken")) {
        const std::string id = get_string(w, item["SpecialToken"], p + ".SpecialToken", "id");
        const json& st = member(w, specials, path + ".special_tokens", id.c_str());
        const json& ids = member(w, st, path + ".special_tokens." + id, "ids");
        if (!ids.is_array()) w.bad(path + ".special_tokens." + id + ".ids", "must be a list of ids");
        for (const auto& x : ids)
          (seen_a ? f.suffix : f.prefix).push_back(special_id(w, x, path + ".special_tokens." + id + ".ids"));
      } else {
        w.bad(p, fmt::format("must be {{\"Sequence\": ...}} or {{\"SpecialToken\": ...}}, got {}",
                             json_brief(item)));
      }
    }
    if (!seen_a) w.bad(path + ".single", "has no $A");
    return f;
  }

  /// bos/eos/pad: tokenizer_config.json (or special_tokens_map.json) beside the file, else the
  /// post_processor's template (its first token is bos, its last eos), else the usual names.
  void pick_special_tokens(const fs::path& dir) {
    const SpecialTokenConfig c = read_special_token_config(dir);
    const Where cw{c.file.string()};
    const auto from_config = [&](const SpecialTokenConfig::Field& f, const char* key,
                                 std::optional<TokenId>& out) {
      if (!f.given) return false;
      if (f.value) out = require_token(json(*f.value), cw, key);
      return true;
    };
    const auto by_name = [&](std::initializer_list<const char*> names) -> std::optional<TokenId> {
      for (const char* n : names)
        for (const auto& t : added_)
          if (t.content == n) return t.id;
      for (const char* n : names)
        if (const auto id = model_->find(n)) return id;
      return std::nullopt;
    };
    if (!from_config(c.bos, "bos_token", bos_)) {
      if (!framing_.prefix.empty() && is_special(framing_.prefix.front()))
        bos_ = framing_.prefix.front();
      else
        bos_ = by_name({"<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>"});
    }
    if (!from_config(c.eos, "eos_token", eos_)) {
      if (!framing_.suffix.empty() && is_special(framing_.suffix.back()))
        eos_ = framing_.suffix.back();
      else
        eos_ = by_name({"</s>", "<eos>", "<|end_of_text|>", "<|endoftext|>"});
    }
    if (!from_config(c.pad, "pad_token", pad_)) pad_ = by_name({"<pad>", "<|pad|>", "[PAD]"});
  }

  bool is_special(TokenId id) const {
    const auto it = added_by_id_.find(id);
    return it != added_by_id_.end() && added_[it->second].special;
  }

  std::string name_, kind_;
  std::vector<std::unique_ptr<Normalizer>> normalizers_;
  std::vector<std::unique_ptr<PreTokenizer>> pre_;
  std::unique_ptr<BpeModel> model_;
  std::vector<std::unique_ptr<Decoder>> decoders_;
  bool has_decoder_ = false;
  std::vector<AddedToken> added_;
  std::unordered_map<TokenId, std::size_t> added_by_id_;
  TokenMatcher raw_matcher_, normalized_matcher_;
  Framing framing_;
  index_t vocab_size_ = 0;
  std::optional<TokenId> bos_, eos_, pad_;
  UnicodeRegex word_char_{R"(^\w$)", "the single_word boundary check"};
};

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const fs::path& file, const std::string& name) {
  const std::string text = read_file_bytes(file, "tokenizer.json");
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    fail<ConfigError>("{}: not valid JSON (a Hugging Face tokenizer.json is expected)", file.string());
  return std::make_unique<HfTokenizer>(j, Where{file.string()}, name, "tokenizer.json", file.parent_path());
}

std::unique_ptr<Tokenizer> load_gpt2_bpe(const fs::path& encoder_json, const fs::path& merges_file,
                                         const std::string& name) {
  const json vocab = json::parse(read_file_bytes(encoder_json, "GPT-2 encoder.json"), nullptr, false);
  if (vocab.is_discarded() || !vocab.is_object())
    fail<ConfigError>("{}: not a JSON object {{token: id}} (GPT-2's encoder.json is expected)",
                      encoder_json.string());
  // vocab.bpe: an optional "#version" line, then one "a b" merge per line.
  json merges = json::array();
  const std::string text = read_file_bytes(merges_file, "GPT-2 vocab.bpe");
  std::size_t line_no = 0;
  for (std::size_t at = 0; at < text.size();) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(at, nl - at);
    at = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    merges.push_back(line);
  }
  // What transformers' GPT2TokenizerFast makes of these files (GPT2Converter).
  json j = {{"added_tokens", json::array()},
            {"normalizer", nullptr},
            {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
            {"post_processor", nullptr},
            {"decoder", {{"type", "ByteLevel"}}},
            {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  if (vocab.contains("<|endoftext|>") && vocab["<|endoftext|>"].is_number_integer())
    j["added_tokens"].push_back({{"id", vocab["<|endoftext|>"]},
                                 {"content", "<|endoftext|>"},
                                 {"special", true},
                                 {"normalized", false}});
  auto tok =
      std::make_unique<HfTokenizer>(j, Where{encoder_json.string() + " + " + merges_file.filename().string()},
                                    name, "gpt2-bpe", encoder_json.parent_path());
  return tok;
}

}  // namespace flowlm::data::detail
