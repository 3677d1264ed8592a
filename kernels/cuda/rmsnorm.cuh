// RMSNorm, weight or 1 + weight (Gemma), on the GPU (see kernels/reference/rmsnorm.cpp for the math).
#pragma once

#include <cuda_runtime.h>

#include "core/types.hpp"

namespace flowlm::kernels::cuda {

/// \brief out[N,C] = inp * rstd * (weight + plus_one), rstd = 1 / sqrt(mean(inp^2) + eps); saves rstd[N].
void rmsnorm_forward(cudaStream_t stream, float* out, float* rstd, const float* inp, const float* weight,
                     index_t N, index_t C, float eps, bool plus_one);
/// \brief dinp += rstd * (g - xhat * mean(g * xhat)) with g = (weight + plus_one) * dout, xhat = inp * rstd;
/// dweight += sum_n dout * xhat (fixed summation order).
void rmsnorm_backward(cudaStream_t stream, float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, index_t N, index_t C, bool plus_one);

}  // namespace flowlm::kernels::cuda
