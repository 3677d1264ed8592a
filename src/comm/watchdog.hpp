// The collective watchdog: a rank that waits too long in one of flowlm's collectives (because
// another rank died without the launcher noticing, hangs, or was stopped) ends the job with a
// message naming itself, the collective and what it was doing, instead of waiting forever.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace flowlm::comm {

/// \brief Process-wide: at most one alive. While alive, a background thread checks the wait
/// that a WaitScope marks; one that lasts longer than timeout() seconds prints
/// "flowlm: error (rank R): waited N s in <collective> during <activity> ..." and ends this
/// process with exit code 1 (the launcher then ends the other ranks). timeout 0 disables it; a
/// world of one rank has nobody to wait for and is never watched.
class Watchdog {
 public:
  Watchdog(int rank, int ranks, double timeout_s);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  /// \brief Changes the timeout of the live watchdog (the job's run.collective_timeout); no-op
  /// without one or in a one-rank world.
  static void set_timeout(double timeout_s);

 private:
  void watch();

  int rank_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

/// \brief RAII: marks this thread as waiting in `what` (a string literal) for the watchdog.
/// Nested scopes count as the outermost one. `suspend` scopes mark a wait that may legitimately
/// last long (ranks waiting for work that rank 0 does alone): the watchdog ignores it.
class WaitScope {
 public:
  explicit WaitScope(const char* what, bool suspend = false);
  ~WaitScope();
  WaitScope(const WaitScope&) = delete;
  WaitScope& operator=(const WaitScope&) = delete;

 private:
  bool outer_;
  bool suspend_;
};

}  // namespace flowlm::comm
