// Inference attention over a key/value cache [B, KVH, S, hd] on the GPU (see
// kernels/reference/kv_cache.cpp for the math): cache writes, and one block per query row.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/types.hpp"
#include "kernels/ops.hpp"

namespace flowlm::kernels::cuda {

/// \brief k_cache, v_cache [B, KVH, S, hd] at positions start[b] + t <- the k and v heads of qkv [B, T, ...].
void kv_cache_write(cudaStream_t stream, float* k_cache, float* v_cache, const float* qkv,
                    const std::int32_t* start, index_t B, index_t T, index_t S, const AttentionParams& p);
/// \brief out [B, T, NH hd]: query t of row b at position start[b] + t over the cached keys it sees.
void attention_cached(cudaStream_t stream, float* out, const float* qkv, const float* k_cache,
                      const float* v_cache, const std::int32_t* start, index_t B, index_t T, index_t S,
                      const AttentionParams& p);

}  // namespace flowlm::kernels::cuda
