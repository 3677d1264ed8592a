// Residual add on the GPU (see kernels/reference/residual.cpp).
#pragma once

#include <cuda_runtime.h>

#include "core/types.hpp"

namespace flowlm::kernels::cuda {

/// \brief out = a + b over n elements (out may alias a or b).
void residual_forward(cudaStream_t stream, float* out, const float* a, const float* b, index_t n);
/// \brief da += dout, db += dout.
void residual_backward(cudaStream_t stream, float* da, float* db, const float* dout, index_t n);

}  // namespace flowlm::kernels::cuda
