// Activation functions shared by the host GELU and gated-MLP kernels (internal). Written with
// exp_approx so that the loops calling them vectorize.
#pragma once

#include "kernels/host/parallel.hpp"

namespace flowlm::kernels::host {

constexpr float kGeluScale = 0.79788456080286535588f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;

/// \brief sigmoid(x) = 1 / (1 + exp(-x)); exp_approx saturates at ~1e30, so it never underflows to a
/// denormal.
KOKKOS_FORCEINLINE_FUNCTION float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

/// \brief 0.5 x (1 + tanh u) == x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): no cancellation for x <<
/// 0.
KOKKOS_FORCEINLINE_FUNCTION float gelu_tanh(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  return x * sigmoid(2.0f * u);
}

/// \brief With s = sigmoid(2u): d gelu/dx = s + 2 x s (1 - s) du/dx, du/dx = sqrt(2/pi) (1 + 3 * 0.044715
/// x^2).
KOKKOS_FORCEINLINE_FUNCTION float gelu_tanh_grad(float x) {
  const float u = kGeluScale * (x + kGeluCubic * x * x * x);
  const float s = sigmoid(2.0f * u);
  const float du = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
  return s + 2.0f * x * s * (1.0f - s) * du;
}

/// \brief silu(x) = x * sigmoid(x).
KOKKOS_FORCEINLINE_FUNCTION float silu(float x) { return x * sigmoid(x); }

/// \brief d silu/dx = s + x s (1 - s), s = sigmoid(x).
KOKKOS_FORCEINLINE_FUNCTION float silu_grad(float x) {
  const float s = sigmoid(x);
  return s + x * s * (1.0f - s);
}

}  // namespace flowlm::kernels::host
