// What `flowlm train` reports while it runs: the progress line (loss, lr, grad norm, tokens/s,
// ETA) and one row per reported step in <run.dir>/metrics.jsonl.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>

#include "comm/comm.hpp"

namespace flowlm::train {

/// \brief The numbers of one optimizer step.
struct StepStats {
  std::int64_t step = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  std::int64_t tokens_seen = 0;
  std::optional<double> val_loss;
};

/// \brief Progress lines and metrics.jsonl (rank 0 writes). Throughput is measured over the steps
/// since the previous report.
class TrainLog {
 public:
  /// \brief A fresh run truncates metrics.jsonl; a run resumed at `resumed_step` keeps its rows up
  /// to that step (the steps after it are replayed).
  TrainLog(const std::filesystem::path& run_dir, std::int64_t max_steps,
           std::optional<std::int64_t> resumed_step, const comm::Communicator& world);
  /// \brief Counts one finished step of `tokens` input tokens (all ranks) towards the throughput.
  void step_done(std::int64_t tokens);
  /// \brief Logs the progress line and appends the metrics row.
  void report(const StepStats& s);

 private:
  using Clock = std::chrono::steady_clock;
  std::filesystem::path file_;
  std::int64_t max_steps_;
  bool root_;
  Clock::time_point window_start_;
  std::int64_t window_steps_ = 0, window_tokens_ = 0;
};

}  // namespace flowlm::train
