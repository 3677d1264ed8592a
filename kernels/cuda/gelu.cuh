// GELU (tanh approximation) on the GPU (see kernels/reference/gelu.cpp for the math).
#pragma once

#include <cuda_runtime.h>

#include "core/types.hpp"

namespace flowlm::kernels::cuda {

/// \brief out = gelu(inp), element-wise over n values.
void gelu_forward(cudaStream_t stream, float* out, const float* inp, index_t n);
/// \brief dinp += gelu'(inp) * dout.
void gelu_backward(cudaStream_t stream, float* dinp, const float* inp, const float* dout, index_t n);

}  // namespace flowlm::kernels::cuda
