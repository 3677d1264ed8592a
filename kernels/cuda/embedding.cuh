// Token (+ position) embedding on the GPU (see kernels/reference/embedding.cpp for the math).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/types.hpp"

namespace flowlm::kernels::cuda {

/// \brief out[b,t,:] = scale * wte[tokens[b,t],:] + wpe[t,:] (wpe may be null). A token outside
/// [0, V) zeroes its row and atomicMin()s its flat index b*T + t into *bad (which starts at kNoBadIndex).
void embedding_forward(cudaStream_t stream, float* out, const std::int32_t* tokens, const float* wte,
                       const float* wpe, index_t B, index_t T, index_t C, index_t V, float scale,
                       unsigned long long* bad);
/// \brief dwte[tokens[b,t],:] += scale * dout[b,t,:] (atomicAdd: summation order varies between
/// runs); dwpe[t,:] += sum_b dout[b,t,:] (dwpe may be null; fixed order). Bad tokens as in forward
/// (their rows add nothing).
void embedding_backward(cudaStream_t stream, float* dwte, float* dwpe, const float* dout,
                        const std::int32_t* tokens, index_t B, index_t T, index_t C, index_t V, float scale,
                        unsigned long long* bad);

}  // namespace flowlm::kernels::cuda
