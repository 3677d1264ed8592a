// Causal self-attention on the GPU (multi-head and grouped-query, optional logit soft-cap and
// sliding window) that materialises the probabilities att [B, NH, T, T] like the reference (see
// kernels/reference/attention.cpp for the math). A straightforward first version: one block per
// query row, no tiling; a flash-style kernel comes later.
#pragma once

#include <cuda_runtime.h>

#include "core/types.hpp"
#include "kernels/ops.hpp"

namespace flowlm::kernels::cuda {

/// \brief out [B, T, NH hd] and att [B, NH, T, T] (exact zeros outside the visible keys) from
/// qkv [B, T, (NH + 2 KVH) hd].
void attention_forward(cudaStream_t stream, float* out, float* att, const float* qkv, index_t B, index_t T,
                       const AttentionParams& p);
/// \brief dqkv += the gradient through attention of dout [B, T, NH hd]; datt [B, NH, T, T] is scratch
/// (it ends up holding the gradient of the scaled scores).
void attention_backward(cudaStream_t stream, float* dqkv, float* datt, const float* dout, const float* qkv,
                        const float* att, index_t B, index_t T, const AttentionParams& p);

}  // namespace flowlm::kernels::cuda
