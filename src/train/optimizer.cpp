#include "train/optimizer.hpp"

#include <algorithm>

#include "core/error.hpp"

namespace flowlm::train {
namespace k = kernels;

AdamW::AdamW(const std::vector<model::ParamSpec>& table, const AdamWParams& hp, k::Backend& backend,
             index_t begin, index_t end)
    : hp_(hp), backend_(&backend) {
  index_t table_end = 0;
  for (const auto& p : table) {
    if (p.offset != table_end) {
      fail<Error>(
          "AdamW: parameter '{}' starts at {} but the previous tensor ends at {}; the table must be "
          "contiguous",
          p.name, p.offset, table_end);
    }
    const bool d = decays(p, hp);
    // Merging neighbours with the same decay makes one kernel call per run, not per tensor.
    if (!runs_.empty() && runs_.back().decay == d) {
      runs_.back().numel += p.numel;
    } else {
      runs_.push_back(Run{p.offset, p.numel, d});
    }
    table_end += p.numel;
  }
  size_ = table_end;
  begin_ = begin;
  end_ = end < 0 ? table_end : end;
  if (begin_ < 0 || begin_ > end_ || end_ > size_)
    fail<Error>("AdamW: slice [{}, {}) is outside the flat buffer of {} elements", begin, end, size_);
  // Keep the parts of the runs inside the slice.
  std::vector<Run> inside;
  for (const auto& r : runs_) {
    const index_t lo = std::max(r.offset, begin_), hi = std::min(r.offset + r.numel, end_);
    if (lo < hi) inside.push_back(Run{lo, hi - lo, r.decay});
  }
  runs_ = std::move(inside);
  m_ = backend.alloc(k::DType::f32, {end_ - begin_});  // zero-filled
  v_ = backend.alloc(k::DType::f32, {end_ - begin_});
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
    backend_->adamw_update(slice(params, r.offset, r.numel), slice(m_.view(), r.offset - begin_, r.numel),
                           slice(v_.view(), r.offset - begin_, r.numel), slice(grads, r.offset, r.numel), p);
  }
}

void AdamW::step(float* params, const float* grads, float lr, float grad_scale) {
  host(m_);  // host backends only
  step(k::host_view(params, {size_}), k::host_view(grads, {size_}), lr, grad_scale);
}

namespace {
index_t row_elems(const model::ParamSpec& p) {
  return p.shape.empty() || p.shape[0] == 0 ? std::max<index_t>(1, p.numel) : p.numel / p.shape[0];
}
}  // namespace

std::vector<index_t> zero_slices(const std::vector<model::ParamSpec>& table, int ranks) {
  if (ranks < 1) fail<Error>("zero_slices: {} ranks", ranks);
  const index_t total = table.empty() ? 0 : table.back().offset + table.back().numel;
  std::vector<index_t> bounds(static_cast<std::size_t>(ranks) + 1, total);
  bounds[0] = 0;
  std::size_t t = 0;  // the tensor the current target falls in (targets only grow)
  for (int r = 1; r < ranks; ++r) {
    const index_t target = static_cast<index_t>(static_cast<double>(total) * r / ranks);
    while (t < table.size() && table[t].offset + table[t].numel <= target) ++t;
    index_t b = total;
    if (t < table.size()) {
      const index_t row = row_elems(table[t]), into = target - table[t].offset;
      b = table[t].offset + (into + row - 1) / row * row;
    }
    bounds[static_cast<std::size_t>(r)] = std::max(bounds[static_cast<std::size_t>(r) - 1], b);
  }
  return bounds;
}

RowRange rows_in_slice(const model::ParamSpec& p, index_t begin, index_t end) {
  const index_t lo = std::max(begin, p.offset), hi = std::min(end, p.offset + p.numel);
  if (lo >= hi) return {};
  const index_t row = row_elems(p);
  if ((lo - p.offset) % row != 0 || (hi - p.offset) % row != 0)
    fail<Error>("rows_in_slice: slice [{}, {}) cuts a row of '{}' (offset {}, rows of {})", begin, end,
                p.name, p.offset, row);
  return {(lo - p.offset) / row, (hi - lo) / row};
}

float clip_scale(double grad_norm, double max_norm) {
  if (max_norm <= 0.0 || !(grad_norm > max_norm)) return 1.0f;
  return static_cast<float>(max_norm / grad_norm);
}

}  // namespace flowlm::train
