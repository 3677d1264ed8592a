// LayerNorm on the GPU (see kernels/reference/layernorm.cpp for the math).
#pragma once

#include <cuda_runtime.h>

#include "core/types.hpp"

namespace flowlm::kernels::cuda {

/// \brief out[N,C] = (inp - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + eps); saves mean[N], rstd[N].
void layernorm_forward(cudaStream_t stream, float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, index_t N, index_t C, float eps);
/// \brief dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = weight * dout;
/// dweight += sum_n dout * xhat; dbias += sum_n dout (fixed summation order).
void layernorm_backward(cudaStream_t stream, float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        index_t N, index_t C);

}  // namespace flowlm::kernels::cuda
