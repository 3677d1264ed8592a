// Typed errors thrown by library code. Only main.cpp turns them into a message and an
// exit code: UsageError -> 2, Interrupted -> 3, every other flowlm::Error -> 1.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace flowlm {

/// \brief Base of every error flowlm reports to a user. The message says what is wrong,
/// where (file, key, dataset, value) and, where it helps, what to do.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// \brief Bad command line: unknown stage or flag, missing argument (exit code 2).
class UsageError : public Error {
 public:
  using Error::Error;
};

/// \brief Bad job file or override: malformed TOML, unknown key, wrong type, out of range.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// \brief A file that cannot be read or written: missing, truncated, corrupt, foreign.
class IoError : public Error {
 public:
  using Error::Error;
};

/// \brief Bad data content: token id out of range, empty sample, mismatched scores file.
class DataError : public Error {
 public:
  using Error::Error;
};

/// \brief Training went numerically wrong: NaN or Inf loss or gradient.
class NumericError : public Error {
 public:
  using Error::Error;
};

/// \brief A stop requested by a signal (Slurm preemption or time limit) after the state was
/// saved: exit code 3 tells the batch script that the job can be requeued and resumed.
class Interrupted : public Error {
 public:
  using Error::Error;
};

/// \brief Throws E with a fmt-formatted message: `fail<IoError>("{}: not found", path)`.
template <class E, class... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw E(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace flowlm
