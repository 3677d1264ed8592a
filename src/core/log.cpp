#include "core/log.hpp"

#include <cmath>

namespace flowlm::log {
namespace {
int g_rank = 0;
}

void set_rank(int r) { g_rank = r; }
int rank() { return g_rank; }

void info_line(const std::string& msg) {
  std::fprintf(stdout, "[flowlm] %s\n", msg.c_str());
  std::fflush(stdout);
}

void warn_line(const std::string& msg) {
  std::fprintf(stderr, "[flowlm] warning: %s\n", msg.c_str());
  std::fflush(stderr);
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

}  // namespace flowlm::log
