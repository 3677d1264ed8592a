#include "fuzz.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <system_error>

namespace flowlm::fuzz {
namespace fs = std::filesystem;

namespace {

struct Scratch {
  fs::path path;
  Scratch() {
    std::error_code ec;
    path = fs::temp_directory_path(ec);
    if (ec) path = ".";
    path /= "flowlm-fuzz-" + std::to_string(::getpid());
    fs::create_directories(path, ec);
    if (ec) {
      std::fprintf(stderr, "fuzz: cannot create the scratch directory %s: %s\n", path.c_str(),
                   ec.message().c_str());
      std::abort();
    }
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

const fs::path& scratch_dir() {
  static const Scratch s;
  return s.path;
}

fs::path write_scratch(const std::string& name, std::string_view bytes) {
  const fs::path p = scratch_dir() / name;
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write the scratch file %s\n", p.c_str());
    std::abort();
  }
  return p;
}

std::vector<std::string_view> split_parts(std::string_view input, std::size_t max_parts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const auto nul = input.find('\0');
    if (nul == std::string_view::npos) break;
    parts.push_back(input.substr(0, nul));
    input.remove_prefix(nul + 1);
  }
  parts.push_back(input);
  return parts;
}

void note_rejection(const flowlm::Error& e) {
  static const bool verbose = [] {
    const char* v = std::getenv("FLOWLM_FUZZ_VERBOSE");
    return v && *v && std::string(v) != "0";
  }();
  if (verbose) std::fprintf(stderr, "fuzz: rejected: %s\n", e.what());
}

void violated(const char* file, int line, const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s (%s)\n", file, line, what, detail.c_str());
  std::abort();
}

}  // namespace flowlm::fuzz
