// Helpers shared by the CUDA kernels: launch sizes and deterministic warp / block / column
// reductions (fixed summation order, so a result does not change from run to run).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/error.hpp"
#include "core/types.hpp"

namespace flowlm::kernels::cuda {

constexpr int kWarpSize = 32;
/// Threads per block of the element-wise (grid-stride) kernels.
constexpr int kElementwiseThreads = 256;
/// Most blocks an element-wise kernel launches; each thread then strides over the rest.
constexpr index_t kMaxElementwiseBlocks = 8192;
/// Column reductions (sums over rows, per column) run on blocks of 32 columns x kColumnRows rows.
constexpr int kColumnRows = 16;
/// The "no bad id" value of the device-side flag of the embedding and cross-entropy kernels, which
/// atomicMin() the flat index of the first token id outside [0, V) into it.
constexpr unsigned long long kNoBadIndex = ~0ull;

inline index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

/// \brief Blocks of kElementwiseThreads for a grid-stride loop over n elements (n > 0).
inline unsigned elementwise_blocks(index_t n) {
  return static_cast<unsigned>(std::min(ceil_div(n, kElementwiseThreads), kMaxElementwiseBlocks));
}

/// \brief Blocks for a kernel that runs one block per row (grid.x is at most 2^31 - 1).
inline unsigned row_blocks(index_t rows) {
  if (rows > 0x7fffffff) fail<Error>("cuda: {} rows exceed the grid's 2^31 - 1 blocks of one launch", rows);
  return static_cast<unsigned>(rows);
}

/// \brief Threads for a block that owns one row of C elements: a multiple of the warp size,
/// from one warp up to `max_threads`.
inline int row_threads(index_t C, int max_threads = 256) {
  const index_t warps = std::min<index_t>(ceil_div(C, kWarpSize), max_threads / kWarpSize);
  return static_cast<int>(std::max<index_t>(warps, 1) * kWarpSize);
}

/// \brief The index of this thread in a 1-D grid-stride loop, and the stride.
__device__ __forceinline__ index_t grid_index() {
  return static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ index_t grid_stride() { return static_cast<index_t>(gridDim.x) * blockDim.x; }

template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

/// \brief The sum of `v` over the block, returned to every thread. blockDim.x is a multiple of 32
/// (at most 1024) and the block is 1-D; `shared` holds 32 values. Safe to call repeatedly.
template <class T>
__device__ T block_sum(T v, T* shared) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = warp_sum(v);
  __syncthreads();  // an earlier call may still be reading `shared`
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : T(0);
  return warp_sum(v);  // every warp adds the same partials in the same order
}

/// \brief The maximum of `v` over the block (as block_sum).
__device__ inline float block_max(float v, float* shared) {
  const int lane = threadIdx.x % kWarpSize, warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < warps ? shared[lane] : -INFINITY;
  return warp_max(v);
}

/// \brief For blocks of (32, kColumnRows) threads where thread (x, y) holds a partial sum `v` of
/// column x over the rows y, y + kColumnRows, ...: the column's total on threads with y == 0
/// (added in the order y = 0, 1, ...), 0 elsewhere. `shared` holds kColumnRows x 32 values.
template <class T>
__device__ T column_sum(T v, T (*shared)[kWarpSize]) {
  shared[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  T total = T(0);
  if (threadIdx.y == 0) {
    for (int r = 0; r < kColumnRows; ++r) total += shared[r][threadIdx.x];
  }
  __syncthreads();
  return total;
}

}  // namespace flowlm::kernels::cuda
