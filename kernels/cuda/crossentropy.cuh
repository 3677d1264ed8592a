// Softmax cross-entropy with a loss mask, and the per-sample loss reduction, on the GPU (see
// kernels/reference/crossentropy.cpp for the math).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/types.hpp"

namespace flowlm::kernels::cuda {

/// \brief losses[n] = logsumexp(logits[n]) - logits[n, targets[n]] where mask[n] != 0 (mask may be
/// null), else 0. A counted target outside [0, V) atomicMin()s its row n into *bad (which starts at
/// kNoBadIndex) and gets loss 0.
void crossentropy_forward(cudaStream_t stream, float* losses, const float* logits,
                          const std::int32_t* targets, const float* mask, index_t N, index_t V,
                          unsigned long long* bad);
/// \brief OVERWRITES dlogits[n] = dlosses[n] (softmax(logits[n]) - onehot(targets[n])), zeros where
/// dlosses[n] == 0; dlogits may alias logits. Bad targets of rows with dlosses != 0 as in forward.
void crossentropy_backward(cudaStream_t stream, float* dlogits, const float* logits,
                           const std::int32_t* targets, const float* dlosses, index_t N, index_t V,
                           unsigned long long* bad);
/// \brief tokens[b] = sum_t mask[b, t]; sample_loss[b] = sum_t losses * mask / tokens[b] (0 without
/// tokens); mask may be null (all ones). Sums in double.
void per_sample_loss(cudaStream_t stream, float* sample_loss, float* tokens, const float* losses,
                     const float* mask, index_t B, index_t T);

}  // namespace flowlm::kernels::cuda
