// Helpers shared by the tests: scratch directories and the source tree's location.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <filesystem>
#include <string>

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

}  // namespace flowlm::testing
