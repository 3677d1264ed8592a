// Helpers shared by the tests: scratch directories and the source tree's location.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace flowlm::testing {

/// \brief A fresh directory under the system temp dir, removed when the object dies.
/// Under MPI every rank gets the same path (rank 0 creates it; pass `shared = true`).
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "flowlm-test", bool shared = false);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
  bool shared_;
};

/// \brief The flowlm source tree (FLOWLM_SOURCE_DIR, set by CTest).
std::filesystem::path source_dir();

/// \brief Runs f, expects it to throw E and returns the message ("" and a test failure when it
/// throws nothing or another type).
template <class E, class F>
std::string thrown(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no exception thrown";
  return "";
}

inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

/// \brief Whether two float arrays hold the same bits (NaNs included); empty arrays are equal.
inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

/// \brief n token ids uniform in [0, V) from a seeded stream.
inline std::vector<std::int32_t> random_tokens(std::int64_t n, std::int64_t V, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::int32_t> d(0, static_cast<std::int32_t>(V - 1));
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = d(rng);
  return t;
}

}  // namespace flowlm::testing
