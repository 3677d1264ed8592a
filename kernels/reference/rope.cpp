// Reference rotary position embedding (Hugging Face rotate-half), angles in double.
#include <cmath>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

namespace {
// For every q and k head at position t, pair i < hd/2 is (x[i], x[i + hd/2]) with angle
// a = (start[b] + t) * theta^(-2i/hd):  x1' = x1 cos a - x2 sin(sign a),  x2' = x2 cos a + x1 sin(sign a);
// sign = -1 is the inverse (transpose) rotation used by the backward.
void rope_rotate(float* qkv, const std::int32_t* start, index_t B, index_t T, const RopeParams& p,
                 double sign) {
  const index_t hd = p.head_dim, half = hd / 2, row = (p.n_head + 2 * p.n_kv_head) * hd;
  for (index_t b = 0; b < B; ++b) {
    for (index_t t = 0; t < T; ++t) {
      for (index_t h = 0; h < p.n_head + p.n_kv_head; ++h) {
        float* x = qkv + (b * T + t) * row + h * hd;
        for (index_t i = 0; i < half; ++i) {
          const double a =
              static_cast<double>((start ? start[b] : 0) + t) *
              std::pow(static_cast<double>(p.theta), -2.0 * static_cast<double>(i) / static_cast<double>(hd));
          const double c = std::cos(a), s = sign * std::sin(a);
          const double x1 = x[i], x2 = x[i + half];
          x[i] = static_cast<float>(x1 * c - x2 * s);
          x[i + half] = static_cast<float>(x2 * c + x1 * s);
        }
      }
    }
  }
}
}  // namespace

void rope_forward(float* qkv, index_t B, index_t T, const RopeParams& p) {
  rope_rotate(qkv, nullptr, B, T, p, 1.0);
}

void rope_backward(float* dqkv, index_t B, index_t T, const RopeParams& p) {
  rope_rotate(dqkv, nullptr, B, T, p, -1.0);
}

void rope_forward_at(float* qkv, const std::int32_t* start, index_t B, index_t T, const RopeParams& p) {
  rope_rotate(qkv, start, B, T, p, 1.0);
}

}  // namespace flowlm::kernels::ref
