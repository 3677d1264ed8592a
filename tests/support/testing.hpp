// Helpers shared by the tests: scratch directories and the source tree's location.
#pragma once

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

}  // namespace flowlm::testing
