// Dense layers on the GPU: cuBLAS GEMMs in full fp32 (no TF32) plus bias kernels (see
// kernels/reference/matmul.cpp for the math).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/types.hpp"
#include "kernels/ops.hpp"

namespace flowlm::kernels::cuda {

/// \brief out[N,OC] = inp[N,C] @ W + bias (bias may be null); weight is [C,OC] (conv1d) or [OC,C]
/// (linear, W = weight^T). `blas` runs on `stream`.
void matmul_forward(cublasHandle_t blas, cudaStream_t stream, float* out, const float* inp,
                    const float* weight, const float* bias, index_t N, index_t C, index_t OC,
                    WeightLayout layout);
/// \brief dinp += dout @ W^T, dweight += inp^T @ dout (in the weight's layout), dbias += sum_n dout
/// (fixed order); each of dinp, dweight, dbias may be null.
void matmul_backward(cublasHandle_t blas, cudaStream_t stream, float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, const float* weight, index_t N, index_t C,
                     index_t OC, WeightLayout layout);

}  // namespace flowlm::kernels::cuda
