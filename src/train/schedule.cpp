#include "train/schedule.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace flowlm::train {

void validate(const ScheduleParams& p) {
  if (p.kind != "cosine" && p.kind != "constant" && p.kind != "wsd") {
    fail<ConfigError>("optim.schedule = '{}': unknown schedule; use \"cosine\", \"constant\" or \"wsd\"",
                      p.kind);
  }
  if (!(p.lr >= 0.0)) fail<ConfigError>("optim.lr = {}: must be >= 0", p.lr);
  if (!(p.min_lr >= 0.0) || p.min_lr > p.lr) {
    fail<ConfigError>("optim.min_lr = {}: must be in [0, optim.lr = {}]; lower optim.min_lr", p.min_lr, p.lr);
  }
  if (p.warmup_steps < 0) fail<ConfigError>("optim.warmup_steps = {}: must be >= 0", p.warmup_steps);
  if (p.max_steps < 1) fail<ConfigError>("train.max_steps = {}: must be >= 1", p.max_steps);
  if (!(p.decay_fraction >= 0.0 && p.decay_fraction <= 1.0)) {
    fail<ConfigError>("optim.decay_fraction = {}: must be in [0, 1]", p.decay_fraction);
  }
}

double lr_at(std::int64_t step, const ScheduleParams& p) {
  validate(p);
  step = std::max<std::int64_t>(step, 0);
  if (step < p.warmup_steps) {
    return p.lr * static_cast<double>(step + 1) / static_cast<double>(p.warmup_steps);
  }
  if (p.kind == "constant") return p.lr;
  if (step >= p.max_steps) return p.min_lr;
  if (p.kind == "cosine") {
    const double span = static_cast<double>(p.max_steps - p.warmup_steps);
    const double r = static_cast<double>(step - p.warmup_steps) / span;
    constexpr double kPi = 3.14159265358979323846;
    return p.min_lr + (p.lr - p.min_lr) * 0.5 * (1.0 + std::cos(kPi * r));
  }
  // wsd
  const auto decay_steps =
      static_cast<std::int64_t>(std::llround(p.decay_fraction * static_cast<double>(p.max_steps)));
  const std::int64_t decay_start = std::max(p.warmup_steps, p.max_steps - decay_steps);
  if (step < decay_start) return p.lr;
  const double r = static_cast<double>(step - decay_start) /
                   static_cast<double>(std::max<std::int64_t>(p.max_steps - decay_start, 1));
  return p.lr + (p.min_lr - p.lr) * r;
}

}  // namespace flowlm::train
