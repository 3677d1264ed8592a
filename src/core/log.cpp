#include "core/log.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <mutex>

#include "core/error.hpp"

namespace flowlm::log {
namespace {
int g_rank = 0;
std::FILE* g_file = nullptr;  // set by FileScope: every line goes there instead
ProgressHook g_progress;
std::mutex g_activity_mutex;
std::string g_activity;
}  // namespace

void set_rank(int r) { g_rank = r; }
int rank() { return g_rank; }

void info_line(const std::string& msg) {
  std::FILE* out = g_file ? g_file : stdout;
  std::fprintf(out, "[flowlm] %s\n", msg.c_str());
  std::fflush(out);
}

void warn_line(const std::string& msg) {
  std::FILE* out = g_file ? g_file : stderr;
  std::fprintf(out, "[flowlm] warning: %s\n", msg.c_str());
  std::fflush(out);
}

FileScope::FileScope(const std::filesystem::path& file) : file_(nullptr), previous_(g_file) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  file_ = std::fopen(file.c_str(), "a");
  if (!file_)
    fail<IoError>("{}: cannot open log file for appending: {}", file.string(), std::strerror(errno));
  g_file = file_;
}

FileScope::~FileScope() {
  g_file = previous_;
  std::fclose(file_);
}

ProgressHook set_progress_hook(ProgressHook hook) {
  std::swap(g_progress, hook);
  return hook;
}

void progress(double fraction) {
  if (g_progress) g_progress(fraction);
}

void set_activity(std::string what) {
  const std::lock_guard<std::mutex> lock(g_activity_mutex);
  g_activity = std::move(what);
}

std::string activity() {
  const std::lock_guard<std::mutex> lock(g_activity_mutex);
  return g_activity;
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", b) : fmt::format("{:.1f} {}", b, units[u]);
}

}  // namespace flowlm::log
