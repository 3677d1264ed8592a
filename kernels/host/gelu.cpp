// Host GELU (tanh approximation) and residual add, element-wise over blocks.
#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::exp_approx;
using host::for_blocks;

namespace {
constexpr float kGeluScale = 0.79788456080286535588f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;
// sigmoid(2u) = 1 / (1 + exp(-2u)); exp_approx saturates at ~1e30, so it never underflows to a denormal.
KOKKOS_FORCEINLINE_FUNCTION float sigmoid2u(float u) { return 1.0f / (1.0f + exp_approx(-2.0f * u)); }
}  // namespace

// 0.5 x (1 + tanh u) == x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): no cancellation for x << 0.
void gelu_forward(float* out, const float* inp, index_t N) {
  for_blocks("flowlm::gelu_forward", N, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      const float x = inp[i];
      const float u = kGeluScale * (x + kGeluCubic * x * x * x);
      out[i] = x * sigmoid2u(u);
    }
  });
}

// With s = sigmoid(2u): d gelu/dx = s + 2 x s (1 - s) du/dx, du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
void gelu_backward(float* dinp, const float* inp, const float* dout, index_t N) {
  for_blocks("flowlm::gelu_backward", N, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      const float x = inp[i];
      const float u = kGeluScale * (x + kGeluCubic * x * x * x);
      const float s = sigmoid2u(u);
      const float du = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
      dinp[i] += (s + 2.0f * x * s * (1.0f - s) * du) * dout[i];
    }
  });
}

void residual_forward(float* out, const float* a, const float* b, index_t N) {
  for_blocks("flowlm::residual_forward", N, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) out[i] = a[i] + b[i];
  });
}

}  // namespace flowlm::kernels
