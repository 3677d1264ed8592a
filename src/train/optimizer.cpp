#include "train/optimizer.hpp"

#include "core/error.hpp"

namespace flowlm::train {
namespace k = kernels;

AdamW::AdamW(const std::vector<model::ParamSpec>& table, const AdamWParams& hp, k::Backend& backend)
    : hp_(hp), backend_(&backend) {
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
  size_ = end;
  m_ = backend.alloc(k::DType::f32, {end});  // zero-filled
  v_ = backend.alloc(k::DType::f32, {end});
}

float* AdamW::host(const k::Buffer& b) const {
  if (backend_->device() != k::Device::host)
    fail<Error>("AdamW: the moments live on the {} backend; copy them to the host first", backend_->name());
  return static_cast<float*>(b.data());
}

void AdamW::step(const k::TensorView& params, const k::TensorView& grads, float lr, float grad_scale) {
  if (params.numel() != size_ || grads.numel() != size_)
    fail<Error>("AdamW::step: params has {} and grads {} elements, expected {}", params.numel(),
                grads.numel(), size_);
  ++step_;
  auto slice = [](const k::TensorView& v, index_t offset, index_t n) {
    return k::TensorView{static_cast<float*>(v.data) + offset, v.dtype, {n}, v.device};
  };
  for (const auto& r : runs_) {
    const k::AdamwParams p{lr,         hp_.beta1, hp_.beta2, hp_.eps, r.decay ? hp_.weight_decay : 0.0f,
                           grad_scale, step_};
    backend_->adamw_update(slice(params, r.offset, r.numel), slice(m_.view(), r.offset, r.numel),
                           slice(v_.view(), r.offset, r.numel), slice(grads, r.offset, r.numel), p);
  }
}

void AdamW::step(float* params, const float* grads, float lr, float grad_scale) {
  host(m_);  // host backends only
  step(k::host_view(params, {size_}), k::host_view(grads, {size_}), lr, grad_scale);
}

float clip_scale(double grad_norm, double max_norm) {
  if (max_norm <= 0.0 || !(grad_norm > max_norm)) return 1.0f;
  return static_cast<float>(max_norm / grad_norm);
}

}  // namespace flowlm::train
