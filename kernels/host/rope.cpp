// Host rotary position embedding (Hugging Face rotate-half), in place on the q and k heads of a
// packed qkv buffer. The cos/sin table [T, hd/2] (or [B*T, hd/2] at given positions) is computed once
// per call in double, then one work item per (b, t) row rotates its NH + KVH heads.
#include <cmath>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::host_range;

namespace {
// cs[r, i] = (cos, sin)(pos_r * theta^(-2i/hd)) for i < hd/2 (the same angle serves x[i] and
// x[i + hd/2]), for the rows r of `positions`; the angle is formed in double as the reference does.
std::vector<float> rope_table(const std::vector<index_t>& positions, const RopeParams& p) {
  const index_t half = p.head_dim / 2, R = static_cast<index_t>(positions.size());
  std::vector<float> cs(static_cast<std::size_t>(2 * R * half));
  for (index_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(static_cast<double>(p.theta),
                                     -2.0 * static_cast<double>(i) / static_cast<double>(p.head_dim));
    for (index_t r = 0; r < R; ++r) {
      const double a = static_cast<double>(positions[static_cast<std::size_t>(r)]) * inv_freq;
      cs[static_cast<std::size_t>(2 * (r * half + i))] = static_cast<float>(std::cos(a));
      cs[static_cast<std::size_t>(2 * (r * half + i) + 1)] = static_cast<float>(std::sin(a));
    }
  }
  return cs;
}

// Per pair (x1, x2) = (x[i], x[i + hd/2]): forward x1' = x1 c - x2 s, x2' = x2 c + x1 s; the backward is
// the transpose rotation (sin negated): dx1 = dy1 c + dy2 s, dx2 = dy2 c - dy1 s.
// With start == null the table has T rows (position t, shared by every b); else a row per (b, t).
void rope_apply(const char* label, float* qkv, const std::int32_t* start, index_t B, index_t T,
                const RopeParams& p, float sign) {
  if (B <= 0 || T <= 0) return;
  std::vector<index_t> positions(static_cast<std::size_t>(start ? B * T : T));
  for (index_t r = 0; r < static_cast<index_t>(positions.size()); ++r)
    positions[static_cast<std::size_t>(r)] = start ? start[r / T] + r % T : r;
  const std::vector<float> table = rope_table(positions, p);
  const float* cs = table.data();
  const bool per_row = start != nullptr;
  const index_t hd = p.head_dim, half = hd / 2, heads = p.n_head + p.n_kv_head;
  const index_t row = (p.n_head + 2 * p.n_kv_head) * hd;
  Kokkos::parallel_for(label, host_range(B * T), [=](const index_t bt) {
    const float* c = cs + 2 * (per_row ? bt : bt % T) * half;
    for (index_t h = 0; h < heads; ++h) {  // q heads then k heads: contiguous at the row's start
      float* x = qkv + bt * row + h * hd;
      for (index_t i = 0; i < half; ++i) {
        const float co = c[2 * i], si = sign * c[2 * i + 1];
        const float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * co - x2 * si;
        x[i + half] = x2 * co + x1 * si;
      }
    }
  });
}
}  // namespace

void rope_forward(float* qkv, index_t B, index_t T, const RopeParams& p) {
  rope_apply("flowlm::rope_forward", qkv, nullptr, B, T, p, 1.0f);
}

void rope_backward(float* dqkv, index_t B, index_t T, const RopeParams& p) {
  rope_apply("flowlm::rope_backward", dqkv, nullptr, B, T, p, -1.0f);
}

void rope_forward_at(float* qkv, const std::int32_t* start, index_t B, index_t T, const RopeParams& p) {
  rope_apply("flowlm::rope_forward_at", qkv, start, B, T, p, 1.0f);
}

}  // namespace flowlm::kernels
