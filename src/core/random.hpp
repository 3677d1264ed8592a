// Portable random numbers for initialisation: the same values on every platform and compiler
// (the distributions of <random> are implementation-defined).
#pragma once

#include <cstdint>
#include <string>

namespace flowlm {

/// \brief The next value of a splitmix64 stream (advances `state`).
inline std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// \brief 64-bit FNV-1a of a string (stream seeds derived from tensor and task names).
inline std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

/// \brief A double uniform in [0, 1) from the stream.
inline double uniform01(std::uint64_t& state) {
  return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
}

}  // namespace flowlm
