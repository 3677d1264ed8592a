// Progress and diagnostic lines. Stages print through these so that only rank 0 talks
// unless asked otherwise, and every line carries a stage prefix.
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
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
/// \brief "512 B", "3.4 MiB", "1.2 GiB".
std::string human_bytes(double bytes);

/// \brief RAII: while alive, this process's info and warning lines are appended to `file`
/// instead of the console (a pipeline that shows its own progress keeps each step's full log
/// in a file). Scopes nest; the innermost wins. Throws IoError when the file cannot be opened.
class FileScope {
 public:
  explicit FileScope(const std::filesystem::path& file);
  ~FileScope();
  FileScope(const FileScope&) = delete;
  FileScope& operator=(const FileScope&) = delete;

 private:
  std::FILE* file_;
  std::FILE* previous_;
};

/// \brief Long loops report the fraction done (0..1) here, e.g. the trainer once per step;
/// a pipeline installs a hook to draw a progress bar. No hook: nothing happens.
using ProgressHook = std::function<void(double fraction)>;
/// \brief Installs `hook` (empty: none) and returns the previous one.
ProgressHook set_progress_hook(ProgressHook hook);
void progress(double fraction);

/// \brief What this process is doing now ("train step 12/40", "writing step_00000012.h5"), for
/// error messages and the collective watchdog (comm/watchdog.hpp). Thread-safe.
void set_activity(std::string what);
std::string activity();

/// \brief RAII: sets the activity and restores the previous one on destruction, except while an
/// exception unwinds the stack: then the failing activity stays for main's error message.
class ActivityScope {
 public:
  explicit ActivityScope(std::string what) : previous_(activity()), unwinding_(std::uncaught_exceptions()) {
    set_activity(std::move(what));
  }
  ~ActivityScope() {
    if (std::uncaught_exceptions() == unwinding_) set_activity(std::move(previous_));
  }
  ActivityScope(const ActivityScope&) = delete;
  ActivityScope& operator=(const ActivityScope&) = delete;

 private:
  std::string previous_;
  int unwinding_;
};

}  // namespace flowlm::log
