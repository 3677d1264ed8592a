#include "core/signals.hpp"

#include <csignal>

namespace flowlm {
namespace {

volatile std::sig_atomic_t g_received = 0;
struct sigaction g_old_usr1 {
}, g_old_term{};

extern "C" void on_stop_signal(int sig) { g_received = sig; }

}  // namespace

StopSignals::StopSignals() {
  g_received = 0;
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, &g_old_usr1);
  sigaction(SIGTERM, &sa, &g_old_term);
}

StopSignals::~StopSignals() {
  sigaction(SIGUSR1, &g_old_usr1, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

int StopSignals::received() { return static_cast<int>(g_received); }

const char* StopSignals::name(int sig) {
  switch (sig) {
    case SIGUSR1:
      return "SIGUSR1";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "signal";
  }
}

}  // namespace flowlm
