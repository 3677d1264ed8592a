#include <algorithm>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/vector.cuh"

namespace flowlm::kernels::cuda {

namespace {

constexpr int kReduceThreads = 256;

// Pass 1: block k adds x[i] y[i] (x[i]^2 when y is null) in double over its grid-stride share and
// writes partials[k].
__global__ void dot_partials_kernel(double* partials, const float* x, const float* y, index_t n) {
  __shared__ double shared[kWarpSize];
  double s = 0.0;
  for (index_t i = grid_index(); i < n; i += grid_stride()) {
    const double xi = x[i];
    s += xi * (y ? static_cast<double>(y[i]) : xi);
  }
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// Pass 2: one block of kReduceThreads adds the `count` partials.
__global__ void sum_partials_kernel(double* result, const double* partials, int count) {
  __shared__ double shared[kWarpSize];
  double s = 0.0;
  for (int k = threadIdx.x; k < count; k += blockDim.x) s += partials[k];
  s = block_sum(s, shared);
  if (threadIdx.x == 0) *result = s;
}

void reduce_dot(cudaStream_t stream, double* result, double* partials, const float* x, const float* y,
                index_t n) {
  const int blocks = static_cast<int>(std::clamp<index_t>(ceil_div(n, kReduceThreads), 1, kReduceBlocks));
  dot_partials_kernel<<<blocks, kReduceThreads, 0, stream>>>(partials, x, y, n);
  FLOWLM_CUDA_CHECK_LAUNCH(dot_partials_kernel);
  sum_partials_kernel<<<1, kReduceThreads, 0, stream>>>(result, partials, blocks);
  FLOWLM_CUDA_CHECK_LAUNCH(sum_partials_kernel);
}

__global__ void scale_kernel(float* x, float s, index_t n) {
  for (index_t i = grid_index(); i < n; i += grid_stride()) x[i] *= s;
}

__global__ void sign_kernel(float* out, const float* x, index_t n) {
  for (index_t i = grid_index(); i < n; i += grid_stride())
    out[i] = static_cast<float>((x[i] > 0.0f) - (x[i] < 0.0f));
}

// Every thread that meets a NaN or Inf stores 1 (the same value: the race is benign).
__global__ void nonfinite_kernel(int* nonfinite, const float* x, index_t n) {
  bool bad = false;
  for (index_t i = grid_index(); i < n; i += grid_stride()) bad |= !isfinite(x[i]);
  if (bad) *nonfinite = 1;
}

// y is not read when b == 0 (it may hold NaN). __fmul_rn / __fadd_rn keep the compiler from fusing
// into an FMA, so the rounding is the reference's a x + b y.
__global__ void axpby_kernel(float* y, const float* x, index_t n, float a, float b) {
  for (index_t i = grid_index(); i < n; i += grid_stride())
    y[i] = b == 0.0f ? __fmul_rn(a, x[i]) : __fadd_rn(__fmul_rn(a, x[i]), __fmul_rn(b, y[i]));
}

}  // namespace

void sum_squares(cudaStream_t stream, double* result, double* partials, const float* x, index_t n) {
  reduce_dot(stream, result, partials, x, nullptr, n);
}

void dot(cudaStream_t stream, double* result, double* partials, const float* x, const float* y, index_t n) {
  reduce_dot(stream, result, partials, x, y, n);
}

void scale(cudaStream_t stream, float* x, float s, index_t n) {
  if (n == 0) return;
  scale_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(x, s, n);
  FLOWLM_CUDA_CHECK_LAUNCH(scale_kernel);
}

void sign(cudaStream_t stream, float* out, const float* x, index_t n) {
  if (n == 0) return;
  sign_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(out, x, n);
  FLOWLM_CUDA_CHECK_LAUNCH(sign_kernel);
}

void find_nonfinite(cudaStream_t stream, int* nonfinite, const float* x, index_t n) {
  if (n == 0) return;
  nonfinite_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(nonfinite, x, n);
  FLOWLM_CUDA_CHECK_LAUNCH(nonfinite_kernel);
}

void axpby(cudaStream_t stream, float* y, const float* x, index_t n, float a, float b) {
  if (n == 0) return;
  axpby_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(y, x, n, a, b);
  FLOWLM_CUDA_CHECK_LAUNCH(axpby_kernel);
}

}  // namespace flowlm::kernels::cuda
