#include "eval/pyregex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utility>

#include "core/error.hpp"
#include "data/tokenizer.hpp"

namespace flowlm::eval {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof buf) < 0) return fmt::format("PCRE2 error {}", code);
  return reinterpret_cast<const char*>(buf);
}

std::size_t utf8_length(std::string_view s, std::size_t at) {
  if (at >= s.size()) return 1;
  const auto c = static_cast<unsigned char>(s[at]);
  const std::size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  return std::min(n, s.size() - at);
}

}  // namespace

PyRegex::PyRegex(const std::string& pattern, const std::string& what) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (!code)
    fail<ConfigError>("{}: the regular expression \"{}\" does not compile: {} at offset {}", what, pattern,
                      pcre2_message(err), offset);
  code_ = code;
  std::uint32_t n = 0;
  pcre2_pattern_info(code, PCRE2_INFO_CAPTURECOUNT, &n);
  groups_ = static_cast<int>(n);
  match_data_ = pcre2_match_data_create_from_pattern(code, nullptr);
}

PyRegex::~PyRegex() {
  if (match_data_) pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_));
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

PyRegex::PyRegex(PyRegex&& o) noexcept
    : pattern_(std::move(o.pattern_)),
      code_(std::exchange(o.code_, nullptr)),
      match_data_(std::exchange(o.match_data_, nullptr)),
      groups_(o.groups_) {}

PyRegex& PyRegex::operator=(PyRegex&& o) noexcept {
  if (this != &o) {
    std::swap(pattern_, o.pattern_);
    std::swap(code_, o.code_);
    std::swap(match_data_, o.match_data_);
    std::swap(groups_, o.groups_);
  }
  return *this;
}

// The loop of pcre2demo.c: after an empty match at p, the next match must not be empty at p, so
// try a non-empty match anchored at p, else move on by one character. That is Python 3.7's rule.
// Subjects that are not UTF-8 (raw bytes from a byte-level model) are read as Python would hold
// them after a lossy decode: each ill-formed sequence one U+FFFD.
template <class F>
void PyRegex::for_each(std::string_view s, F&& f) const {
  auto* code = static_cast<pcre2_code*>(code_);
  auto* md = static_cast<pcre2_match_data*>(match_data_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  std::size_t from = 0;
  bool after_empty = false;
  while (from <= s.size()) {
    const std::uint32_t opts = after_empty ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
    const int rc = pcre2_match(code, subject, s.size(), from, opts, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) {
      if (!after_empty) return;
      from += utf8_length(s, from);
      after_empty = false;
      continue;
    }
    if (rc < 0) fail<DataError>("regular expression \"{}\": {}", pattern_, pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    f(ov[0], ov[1], ov);
    after_empty = ov[0] == ov[1];
    from = ov[1];
  }
}

std::vector<std::vector<std::string>> PyRegex::findall(std::string_view raw) const {
  std::string clean;
  const std::string_view s = data::sanitize_utf8(raw, clean) ? std::string_view(clean) : raw;
  std::vector<std::vector<std::string>> out;
  for_each(s, [&](std::size_t start, std::size_t end, const PCRE2_SIZE* ov) {
    std::vector<std::string> m;
    if (groups_ == 0) {
      m.emplace_back(s.substr(start, end - start));
    } else {
      for (int g = 1; g <= groups_; ++g) {
        const PCRE2_SIZE a = ov[2 * g], b = ov[2 * g + 1];
        m.emplace_back(a == PCRE2_UNSET ? std::string() : std::string(s.substr(a, b - a)));
      }
    }
    out.push_back(std::move(m));
  });
  return out;
}

std::string PyRegex::sub(std::string_view raw, std::string_view repl) const {
  std::string clean;
  const std::string_view s = data::sanitize_utf8(raw, clean) ? std::string_view(clean) : raw;
  std::string out;
  std::size_t last = 0;
  for_each(s, [&](std::size_t start, std::size_t end, const PCRE2_SIZE*) {
    out.append(s.substr(last, start - last));
    out.append(repl);
    last = end;
  });
  out.append(s.substr(last));
  return out;
}

std::size_t PyRegex::count_pieces(std::string_view raw) const {
  std::string clean;
  const std::string_view s = data::sanitize_utf8(raw, clean) ? std::string_view(clean) : raw;
  std::size_t n = 1;
  for_each(s, [&](std::size_t, std::size_t, const PCRE2_SIZE*) { ++n; });
  return n;
}

}  // namespace flowlm::eval
