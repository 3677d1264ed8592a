#include "train/optimizer.hpp"

#include "core/error.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::train {

AdamW::AdamW(const std::vector<model::ParamSpec>& table, const AdamWParams& hp) : hp_(hp) {
  index_t end = 0;
  for (const auto& p : table) {
    if (p.offset != end) {
      fail<Error>(
          "AdamW: parameter '{}' starts at {} but the previous tensor ends at {}; the table must be "
          "contiguous",
          p.name, p.offset, end);
    }
    const bool d = decays(p, hp);
    // Merging neighbours with the same decay makes one kernel call per run, not per tensor.
    if (!runs_.empty() && runs_.back().decay == d) {
      runs_.back().numel += p.numel;
    } else {
      runs_.push_back(Run{p.offset, p.numel, d});
    }
    end += p.numel;
  }
  m_.assign(static_cast<std::size_t>(end), 0.0f);
  v_.assign(static_cast<std::size_t>(end), 0.0f);
}

void AdamW::step(float* params, const float* grads, float lr, float grad_scale) {
  ++step_;
  for (const auto& r : runs_) {
    kernels::adamw_update(params + r.offset, m_.data() + r.offset, v_.data() + r.offset, grads + r.offset,
                          r.numel, lr, hp_.beta1, hp_.beta2, hp_.eps, r.decay ? hp_.weight_decay : 0.0f,
                          grad_scale, step_);
  }
}

float clip_scale(double grad_norm, double max_norm) {
  if (max_norm <= 0.0 || !(grad_norm > max_norm)) return 1.0f;
  return static_cast<float>(max_norm / grad_norm);
}

}  // namespace flowlm::train
