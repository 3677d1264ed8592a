// Rotary position embedding (Hugging Face rotate-half) in place on the GPU (see
// kernels/reference/rope.cpp for the math).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/types.hpp"
#include "kernels/ops.hpp"

namespace flowlm::kernels::cuda {

/// \brief Rotates the q and k heads of qkv [B, T, (NH + 2 KVH) hd] in place by angle t * theta^(-2i/hd).
void rope_forward(cudaStream_t stream, float* qkv, index_t B, index_t T, const RopeParams& p);
/// \brief The inverse (transpose) rotation, in place on the gradient dqkv.
void rope_backward(cudaStream_t stream, float* dqkv, index_t B, index_t T, const RopeParams& p);
/// \brief rope_forward with token t of row b at position start[b] + t (start [B] on the device).
void rope_forward_at(cudaStream_t stream, float* qkv, const std::int32_t* start, index_t B, index_t T,
                     const RopeParams& p);

}  // namespace flowlm::kernels::cuda
