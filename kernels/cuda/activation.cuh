// The activations' scalar math, shared by the GELU and gated-MLP kernels (device functions only).
#pragma once

#include <cuda_runtime.h>

namespace flowlm::kernels::cuda {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2 / pi)

/// \brief GELU, tanh approximation: 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3).
__device__ __forceinline__ float gelu(float x) {
  return 0.5f * x * (1.0f + tanhf(kGeluScale * (x + 0.044715f * x * x * x)));
}
/// \brief d gelu / dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx.
__device__ __forceinline__ float gelu_grad(float x) {
  const float th = tanhf(kGeluScale * (x + 0.044715f * x * x * x));
  return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * kGeluScale * (1.0f + 3.0f * 0.044715f * x * x);
}
/// \brief SiLU x / (1 + exp(-x)) and its derivative s (1 + x (1 - s)), s = sigmoid(x).
__device__ __forceinline__ float silu(float x) { return x / (1.0f + expf(-x)); }
__device__ __forceinline__ float silu_grad(float x) {
  const float s = 1.0f / (1.0f + expf(-x));
  return s * (1.0f + x * (1.0f - s));
}

}  // namespace flowlm::kernels::cuda
