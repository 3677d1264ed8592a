// Unicode regular expressions for tokenizer patterns (the pre-tokenisation regexes of GPT-2,
// Llama 3, Qwen2 and any `Split` pattern of a tokenizer.json), on PCRE2 with its JIT: Unicode
// properties (\p{L}, \p{N}), lookahead (`\s+(?!\S)`) and inline flags (`(?i:'s|'t)`), which
// std::regex lacks. Patterns are read as Oniguruma, the engine of the tokenizers library, reads
// them: \s is Unicode White_Space, \h a hex digit; \d and \w are PCRE2's Unicode classes
// (PCRE2_UCP). Subjects must be valid UTF-8 (see sanitize_utf8).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace flowlm::data {

/// \brief A compiled pattern. Matching reuses per-object buffers: one object per thread.
class UnicodeRegex {
 public:
  /// \brief Throws ConfigError "<what>: <PCRE2 message> at offset N" when the pattern does not
  /// compile; `what` names where the pattern came from (file and JSON key).
  UnicodeRegex(const std::string& pattern, const std::string& what);
  ~UnicodeRegex();
  UnicodeRegex(UnicodeRegex&& other) noexcept;
  UnicodeRegex& operator=(UnicodeRegex&&) = delete;
  UnicodeRegex(const UnicodeRegex&) = delete;
  UnicodeRegex& operator=(const UnicodeRegex&) = delete;

  const std::string& pattern() const { return pattern_; }
  /// \brief The first match in s at or after byte `from`: sets [start, end) and returns true.
  /// Lookbehind sees s before `from`. DataError if PCRE2 fails (e.g. its JIT stack overflows).
  bool search(std::string_view s, std::size_t from, std::size_t& start, std::size_t& end) const;

  /// \brief Calls f(start, end) for every match, left to right, without overlaps; an empty
  /// match right after the previous match is skipped (Rust's and Oniguruma's find_iter).
  template <class F>
  void for_each_match(std::string_view s, F&& f) const {
    std::size_t from = 0, start = 0, end = 0, last_end = std::string_view::npos;
    while (from <= s.size() && search(s, from, start, end)) {
      if (start == end && end == last_end) {
        from = end + utf8_char_length(s, end);
        continue;
      }
      f(start, end);
      from = last_end = end;
      if (start == end) from += utf8_char_length(s, end);
    }
  }

 private:
  static std::size_t utf8_char_length(std::string_view s, std::size_t at);
  std::string pattern_;
  void* code_ = nullptr;        // pcre2_code_8
  void* match_data_ = nullptr;  // pcre2_match_data_8
  void* context_ = nullptr;     // pcre2_match_context_8, with the JIT stack
  void* jit_stack_ = nullptr;   // pcre2_jit_stack_8
  bool jit_ = false;
};

}  // namespace flowlm::data
