// Progress and diagnostic lines. Stages print through these so that only rank 0 talks
// unless asked otherwise, and every line carries a stage prefix.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <utility>

namespace flowlm::log {

/// \brief Set once at start-up: this process's rank; only rank 0 prints `info` lines.
void set_rank(int rank);
int rank();

/// \brief Prints "[flowlm] <msg>" on rank 0 to stdout and flushes (batch logs must be live).
void info_line(const std::string& msg);
/// \brief Prints "[flowlm] warning: <msg>" on rank 0 to stderr.
void warn_line(const std::string& msg);

template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... args) {
  if (rank() == 0) info_line(fmt::format(f, std::forward<Args>(args)...));
}
template <class... Args>
void warn(fmt::format_string<Args...> f, Args&&... args) {
  if (rank() == 0) warn_line(fmt::format(f, std::forward<Args>(args)...));
}

/// \brief "1h02m", "3m05s", "12s": durations for ETA fields.
std::string format_duration(double seconds);

}  // namespace flowlm::log
