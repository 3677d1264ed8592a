// What the fuzz targets share: scratch files, splitting an input into parts, and the rule that
// only flowlm's typed errors (flowlm::Error and subclasses) are a clean rejection. Anything else
// (a crash, a sanitizer report, another exception type, a broken promise checked with
// FLOWLM_FUZZ_CHECK, a hang) reaches libFuzzer and is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace flowlm::fuzz {

/// \brief A directory of this process under the system temp dir, made on first use and removed at exit.
const std::filesystem::path& scratch_dir();

/// \brief Writes `bytes` to scratch_dir() / name (replacing it) and returns the path.
std::filesystem::path write_scratch(const std::string& name, std::string_view bytes);

/// \brief The input as text.
inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

/// \brief The input cut at every NUL byte: part 0 is the file under test, later parts are optional
/// extras (another file, a text to encode). Seeds without a NUL are one part.
std::vector<std::string_view> split_parts(std::string_view input, std::size_t max_parts);

/// \brief Aborts with a message naming the broken promise (a finding libFuzzer reports).
[[noreturn]] void violated(const char* file, int line, const char* what, const std::string& detail);

/// \brief FLOWLM_FUZZ_VERBOSE=1 in the environment: print every rejection (to check what a corpus file
/// reaches).
void note_rejection(const flowlm::Error& e);

/// \brief Runs f; flowlm::Error is a clean rejection. Every other exception escapes.
template <class F>
int run(F&& f) {
  try {
    f();
  } catch (const flowlm::Error& e) {
    note_rejection(e);
  }
  return 0;
}

}  // namespace flowlm::fuzz

/// \brief A promise of the code under test that the target checks on what it accepted.
#define FLOWLM_FUZZ_CHECK(cond, detail)                                         \
  do {                                                                          \
    if (!(cond)) ::flowlm::fuzz::violated(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)
