// Logit soft-capping (Gemma-2) on the GPU (see kernels/reference/softcap.cpp).
#pragma once

#include <cuda_runtime.h>

#include "core/types.hpp"

namespace flowlm::kernels::cuda {

/// \brief out = cap * tanh(inp / cap) over n elements (out may alias inp).
void softcap_forward(cudaStream_t stream, float* out, const float* inp, index_t n, float cap);
/// \brief dinp += dout * (1 - (out / cap)^2), from the forward's output.
void softcap_backward(cudaStream_t stream, float* dinp, const float* out, const float* dout, index_t n,
                      float cap);

}  // namespace flowlm::kernels::cuda
