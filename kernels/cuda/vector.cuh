// Vector ops on the GPU: sum of squares and dot (double, deterministic), scale, finiteness, axpby
// (see kernels/reference/vector.cpp). The reductions write their result to device memory; the
// backend copies it back.
#pragma once

#include <cuda_runtime.h>

#include "core/types.hpp"

namespace flowlm::kernels::cuda {

/// Blocks of the first reduction pass: at most this many double partials (the scratch a caller provides).
constexpr int kReduceBlocks = 256;

/// \brief *result = sum_i x[i]^2 in double: per-block partials (a grid that depends only on n), then
/// one block adds them in a fixed order, so the result is the same on every run. partials holds
/// kReduceBlocks doubles.
void sum_squares(cudaStream_t stream, double* result, double* partials, const float* x, index_t n);
/// \brief *result = sum_i x[i] y[i] in double, as sum_squares.
void dot(cudaStream_t stream, double* result, double* partials, const float* x, const float* y, index_t n);
/// \brief x *= s.
void scale(cudaStream_t stream, float* x, float s, index_t n);
/// \brief out[i] = sign(x[i]) (0 for zero and NaN); out may alias x.
void sign(cudaStream_t stream, float* out, const float* x, index_t n);
/// \brief Sets *nonfinite to 1 if some x[i] is NaN or Inf (the caller zeroes it first).
void find_nonfinite(cudaStream_t stream, int* nonfinite, const float* x, index_t n);
/// \brief y = a x + b y; with b == 0, y is only written.
void axpby(cudaStream_t stream, float* y, const float* x, index_t n, float a, float b);

}  // namespace flowlm::kernels::cuda
