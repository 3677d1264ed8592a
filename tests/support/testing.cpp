#include "support/testing.hpp"

#include <cstdlib>
#include <random>

#include "comm/comm.hpp"

namespace flowlm::testing {

TempDir::TempDir(const std::string& tag, bool shared) : shared_(shared) {
  const auto world = comm::Communicator::world();
  std::string name;
  if (!shared || world.is_root()) {
    std::random_device rd;
    name = tag + "-" + std::to_string(rd()) + std::to_string(rd());
  }
  if (shared) world.broadcast(name);
  path_ = std::filesystem::temp_directory_path() / name;
  if (!shared || world.is_root()) std::filesystem::create_directories(path_);
  if (shared) world.barrier();
}

TempDir::~TempDir() {
  std::error_code ec;
  if (shared_) {
    const auto world = comm::Communicator::world();
    world.barrier();
    if (world.is_root()) std::filesystem::remove_all(path_, ec);
  } else {
    std::filesystem::remove_all(path_, ec);
  }
}

std::filesystem::path source_dir() {
  const char* s = std::getenv("FLOWLM_SOURCE_DIR");
  return s ? std::filesystem::path(s) : std::filesystem::current_path();
}

}  // namespace flowlm::testing
