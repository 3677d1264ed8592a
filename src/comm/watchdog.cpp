#include "comm/watchdog.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/log.hpp"

namespace flowlm::comm {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_alive{false};
std::atomic<bool> g_watching{false};  // alive in a world of several ranks
std::atomic<double> g_timeout{0.0};
// The wait being watched: its start (ns since the clock's epoch; 0 = none) and its name.
// Only the thread that calls MPI (funneled) writes them.
std::atomic<std::int64_t> g_since{0};
std::atomic<const char*> g_what{nullptr};
std::atomic<int> g_depth{0};
std::atomic<int> g_suspended{0};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

}  // namespace

Watchdog::Watchdog(int rank, int ranks, double timeout_s) : rank_(rank) {
  if (g_alive.exchange(true)) {
    std::fputs("flowlm: internal error: a second collective watchdog was started\n", stderr);
    std::abort();
  }
  if (ranks < 2) return;
  g_timeout = timeout_s;
  g_watching = true;
  thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  g_watching = false;
  g_alive = false;
}

void Watchdog::set_timeout(double timeout_s) {
  if (g_watching) g_timeout = timeout_s;
}

void Watchdog::watch() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    const double timeout = g_timeout;
    // Check ten times per timeout (at least every 50 ms, at most every 2 s).
    const double period = timeout > 0 ? std::min(2.0, std::max(0.05, timeout / 10)) : 1.0;
    wake_.wait_for(lock, std::chrono::duration<double>(period));
    if (stop_ || timeout <= 0) continue;
    const std::int64_t since = g_since;
    if (since == 0 || g_suspended > 0) continue;
    const double waited = static_cast<double>(now_ns() - since) * 1e-9;
    if (waited <= timeout) continue;
    const char* what = g_what;
    const std::string doing = log::activity();
    std::fprintf(stderr,
                 "flowlm: error (rank %d): waited %.0f s in %s%s%s; another rank has died, hangs or is far "
                 "behind. Ending the job (run.collective_timeout = %g s; raise it if a step legitimately "
                 "takes longer)\n",
                 rank_, waited, what ? what : "a collective", doing.empty() ? "" : " during ", doing.c_str(),
                 timeout);
    std::fflush(stderr);
    std::fflush(stdout);
    std::_Exit(1);  // not MPI_Abort: the main thread is inside MPI, and MPI is funneled
  }
}

WaitScope::WaitScope(const char* what, bool suspend) : outer_(g_depth.fetch_add(1) == 0), suspend_(suspend) {
  if (suspend_) ++g_suspended;
  if (outer_) {
    g_what = what;
    g_since = now_ns();
  }
}

WaitScope::~WaitScope() {
  if (outer_) {
    g_since = 0;
    g_what = nullptr;
  }
  if (suspend_) --g_suspended;
  g_depth.fetch_sub(1);
}

}  // namespace flowlm::comm
