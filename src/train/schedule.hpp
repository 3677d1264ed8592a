// Learning-rate schedules: cosine, constant and warmup-stable-decay (wsd), each after a
// linear warmup.
#pragma once

#include <cstdint>
#include <string>

namespace flowlm::train {

/// \brief Schedule settings (mirrors the job's [optim] section without depending on it).
struct ScheduleParams {
  std::string kind = "cosine";  ///< "cosine", "constant" or "wsd"
  double lr = 6e-4;             ///< peak learning rate
  double min_lr = 0.0;          ///< reached at max_steps (cosine, wsd)
  std::int64_t warmup_steps = 0;
  std::int64_t max_steps = 1;
  double decay_fraction = 0.2;  ///< wsd: the last fraction of max_steps decays linearly
};

/// \brief Throws ConfigError naming the field unless kind is known, lr >= min_lr >= 0,
/// warmup_steps >= 0, max_steps >= 1 and decay_fraction in [0, 1].
void validate(const ScheduleParams& p);

/// \brief Learning rate of update `step` (0-based). Warmup: lr * (step + 1) / warmup_steps for
/// step < warmup_steps. Then cosine: min_lr + (lr - min_lr) * 0.5 (1 + cos(pi r)),
/// r = (step - warmup) / (max_steps - warmup); constant: lr; wsd: lr until the decay
/// phase (the last round(decay_fraction * max_steps) steps, never inside the warmup), then
/// linear to min_lr at max_steps. Steps >= max_steps give the final value. Validates p.
double lr_at(std::int64_t step, const ScheduleParams& p);

}  // namespace flowlm::train
