// Regular expressions as Python's `re` module runs them (lm-eval's answer filters and
// exact_match's regexes_to_ignore are Python patterns), on PCRE2 in UTF mode with Unicode
// classes: findall() returns groups as re.findall does, sub() replaces as re.sub does (Python
// 3.7+ empty-match rules). Patterns use the syntax the two engines share. Subjects that are not
// valid UTF-8 are matched as their lossy decode (U+FFFD for each ill-formed sequence).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace flowlm::eval {

/// \brief A compiled pattern; const methods may be called from one thread at a time.
class PyRegex {
 public:
  /// \brief ConfigError "<what>: <message> at offset N in <pattern>" when the pattern does not compile.
  PyRegex(const std::string& pattern, const std::string& what);
  ~PyRegex();
  PyRegex(PyRegex&& other) noexcept;
  PyRegex& operator=(PyRegex&& other) noexcept;
  PyRegex(const PyRegex&) = delete;
  PyRegex& operator=(const PyRegex&) = delete;

  const std::string& pattern() const { return pattern_; }
  /// \brief Capturing groups in the pattern.
  int groups() const { return groups_; }
  /// \brief re.findall: one entry per match, left to right; each is {whole match} when the pattern
  /// has no groups, else every group's text ("" for a group that did not take part).
  std::vector<std::vector<std::string>> findall(std::string_view s) const;
  /// \brief re.sub(pattern, repl, s) with a literal replacement.
  std::string sub(std::string_view s, std::string_view repl = {}) const;
  /// \brief re.split(pattern, s) without groups: the number of pieces (matches + 1).
  std::size_t count_pieces(std::string_view s) const;

 private:
  /// Calls f(start, end, ovector) for each match as Python's finditer yields them.
  template <class F>
  void for_each(std::string_view s, F&& f) const;

  std::string pattern_;
  void* code_ = nullptr;        // pcre2_code_8
  void* match_data_ = nullptr;  // pcre2_match_data_8
  int groups_ = 0;
};

}  // namespace flowlm::eval
