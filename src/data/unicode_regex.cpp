#include "data/unicode_regex.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utility>

#include "core/error.hpp"

namespace flowlm::data {

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  if (pcre2_get_error_message(code, buf, sizeof buf) < 0) return fmt::format("PCRE2 error {}", code);
  return reinterpret_cast<const char*>(buf);
}

// Long runs of one class (a 100 kB line of letters) need more than PCRE2's default 32 kB JIT stack.
constexpr std::size_t kJitStackStart = 64 * 1024;
constexpr std::size_t kJitStackMax = 64 * 1024 * 1024;

// Oniguruma's \s is Unicode White_Space; PCRE2's (with UCP) adds U+180E MONGOLIAN VOWEL SEPARATOR.
constexpr const char* kWhiteSpace =
    R"(\x{9}-\x{D}\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";

/// An Oniguruma pattern (as tokenizer.json files hold) in PCRE2's dialect: \s and \S as
/// Oniguruma means them, and \h / \H, which are hex digits there (horizontal space in PCRE2).
/// \S inside a character class stays PCRE2's (the two differ on U+180E only).
std::string onig_to_pcre2(const std::string& p) {
  std::string out;
  int depth = 0;  // inside a character class
  for (std::size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[++i];
      if (n == 's')
        out += depth ? std::string(kWhiteSpace) : fmt::format("[{}]", kWhiteSpace);
      else if (n == 'S' && !depth)
        out += fmt::format("[^{}]", kWhiteSpace);
      else if (n == 'h')
        out += depth ? "0-9a-fA-F" : "[0-9a-fA-F]";
      else if (n == 'H' && !depth)
        out += "[^0-9a-fA-F]";
      else
        out += {c, n};
      continue;
    }
    if (c == '[') {
      if (depth && p.compare(i, 2, "[:") == 0) {  // a POSIX class [:alpha:] inside a class
        const auto e = p.find(":]", i + 2);
        if (e != std::string::npos) {
          out.append(p, i, e + 2 - i);
          i = e + 1;
          continue;
        }
      }
      ++depth;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && depth) --depth;
    out += c;
  }
  return out;
}

}  // namespace

UnicodeRegex::UnicodeRegex(const std::string& pattern, const std::string& what) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  const std::string pcre = onig_to_pcre2(pattern);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pcre.data()), pcre.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr);
  if (!code)
    fail<ConfigError>("{}: the regex \"{}\" does not compile (as PCRE2 \"{}\"): {} at offset {}", what,
                      pattern, pcre, pcre2_message(err), offset);
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
  match_data_ = pcre2_match_data_create_from_pattern(code, nullptr);
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  context_ = ctx;
  if (jit_) {
    pcre2_jit_stack* stack = pcre2_jit_stack_create(kJitStackStart, kJitStackMax, nullptr);
    jit_stack_ = stack;
    pcre2_jit_stack_assign(ctx, nullptr, stack);
  }
  if (!match_data_ || !ctx || (jit_ && !jit_stack_)) fail<Error>("{}: out of memory compiling a regex", what);
}

UnicodeRegex::~UnicodeRegex() {
  if (jit_stack_) pcre2_jit_stack_free(static_cast<pcre2_jit_stack*>(jit_stack_));
  if (context_) pcre2_match_context_free(static_cast<pcre2_match_context*>(context_));
  if (match_data_) pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_));
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

UnicodeRegex::UnicodeRegex(UnicodeRegex&& o) noexcept
    : pattern_(std::move(o.pattern_)),
      code_(std::exchange(o.code_, nullptr)),
      match_data_(std::exchange(o.match_data_, nullptr)),
      context_(std::exchange(o.context_, nullptr)),
      jit_stack_(std::exchange(o.jit_stack_, nullptr)),
      jit_(o.jit_) {}

bool UnicodeRegex::search(std::string_view s, std::size_t from, std::size_t& start, std::size_t& end) const {
  auto* code = static_cast<pcre2_code*>(code_);
  auto* md = static_cast<pcre2_match_data*>(match_data_);
  auto* ctx = static_cast<pcre2_match_context*>(context_);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  // The subject is valid UTF-8 (the tokenizer sanitizes its input first): skip PCRE2's check.
  const int rc = jit_ ? pcre2_jit_match(code, subject, s.size(), from, 0, md, ctx)
                      : pcre2_match(code, subject, s.size(), from, PCRE2_NO_UTF_CHECK, md, ctx);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0)
    fail<DataError>("regex \"{}\" failed on a text of {} bytes at offset {}: {}", pattern_, s.size(), from,
                    pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  start = ov[0];
  end = ov[1];
  return true;
}

std::size_t UnicodeRegex::utf8_char_length(std::string_view s, std::size_t at) {
  if (at >= s.size()) return 1;
  const auto b = static_cast<unsigned char>(s[at]);
  return b < 0x80 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

}  // namespace flowlm::data
