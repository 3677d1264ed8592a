#include "train/train_log.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "core/log.hpp"

namespace flowlm::train {
namespace fs = std::filesystem;

namespace {
/// Keeps the rows of metrics.jsonl up to `step` (a resumed run replays the steps after it).
void truncate_metrics(const fs::path& file, std::int64_t step) {
  std::ifstream in(file);
  if (!in) return;
  std::vector<std::string> keep;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded() || !row.contains("step") || row["step"].get<std::int64_t>() <= step)
      keep.push_back(line);
  }
  in.close();
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& l : keep) out << l << '\n';
  }
  fs::rename(tmp, file);
}
}  // namespace

TrainLog::TrainLog(const fs::path& run_dir, std::int64_t max_steps, std::optional<std::int64_t> resumed_step,
                   const comm::Communicator& world)
    : file_(run_dir / "metrics.jsonl"),
      max_steps_(max_steps),
      root_(world.is_root()),
      window_start_(Clock::now()) {
  if (!root_) return;
  if (resumed_step)
    truncate_metrics(file_, *resumed_step);
  else
    std::ofstream(file_, std::ios::trunc);
}

void TrainLog::step_done(std::int64_t tokens) {
  ++window_steps_;
  window_tokens_ += tokens;
}

void TrainLog::report(const StepStats& s) {
  const double secs = std::chrono::duration<double>(Clock::now() - window_start_).count();
  const double step_time = window_steps_ > 0 ? secs / static_cast<double>(window_steps_) : 0;
  const double tok_s = secs > 0 ? static_cast<double>(window_tokens_) / secs : 0;
  const double eta = step_time * static_cast<double>(max_steps_ - s.step);
  std::string line =
      fmt::format("step {:>6}/{} | loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} tok/s | ETA {}", s.step,
                  max_steps_, s.loss, s.lr, s.grad_norm, tok_s, log::format_duration(eta));
  if (s.val_loss) line += fmt::format(" | val {:.4f}", *s.val_loss);
  log::info("{}", line);
  if (root_) {
    nlohmann::json row = {{"step", s.step},
                          {"loss", s.loss},
                          {"lr", s.lr},
                          {"grad_norm", s.grad_norm},
                          {"tokens_seen", s.tokens_seen},
                          {"tokens_per_s", tok_s}};
    if (s.val_loss) row["val_loss"] = *s.val_loss;
    std::ofstream(file_, std::ios::app) << row.dump() << '\n';
  }
  window_start_ = Clock::now();
  window_steps_ = 0;
  window_tokens_ = 0;
}

}  // namespace flowlm::train
