// Graceful stop on SIGUSR1 / SIGTERM (Slurm sends them before a time limit or preemption):
// the handler only records the signal; long-running loops poll it at safe points.
#pragma once

namespace flowlm {

/// \brief RAII: installs the SIGUSR1/SIGTERM handlers for its lifetime, restoring the old ones.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  /// \brief The signal received since installation, or 0.
  static int received();
  /// \brief "SIGUSR1" / "SIGTERM" / "signal N".
  static const char* name(int sig);
};

}  // namespace flowlm
