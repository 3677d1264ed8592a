#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/crossentropy.cuh"

namespace flowlm::kernels::cuda {

namespace {

constexpr int kLossThreads = 256;

// max_v x[v] and sum_v exp(x[v] - max) over a row of V logits, on every thread of the block.
__device__ void row_softmax_stats(const float* x, index_t V, float* shared, float& maxv, float& sum) {
  float m = -INFINITY;
  for (index_t v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, x[v]);
  maxv = block_max(m, shared);
  float s = 0.0f;
  for (index_t v = threadIdx.x; v < V; v += blockDim.x) s += expf(x[v] - maxv);
  sum = block_sum(s, shared);
}

// One block per row n of logits [N, V]. The early returns depend only on n, so they are uniform
// across the block (no thread is left waiting at a barrier).
__global__ void crossentropy_forward_kernel(float* losses, const float* logits, const std::int32_t* targets,
                                            const float* mask, index_t V, unsigned long long* bad) {
  __shared__ float shared[kWarpSize];
  const index_t n = blockIdx.x;
  if (mask && mask[n] == 0.0f) {
    if (threadIdx.x == 0) losses[n] = 0.0f;
    return;
  }
  const index_t target = targets[n];
  if (target < 0 || target >= V) {
    if (threadIdx.x == 0) {
      atomicMin(bad, static_cast<unsigned long long>(n));
      losses[n] = 0.0f;
    }
    return;
  }
  const float* x = logits + n * V;
  float maxv, sum;
  row_softmax_stats(x, V, shared, maxv, sum);
  if (threadIdx.x == 0) losses[n] = (maxv - x[target]) + logf(sum);
}

// One block per row. Every read of the row for the statistics happens before the block's last
// barrier, and afterwards each thread reads x[v] before writing dx[v]: in place is safe.
__global__ void crossentropy_backward_kernel(float* dlogits, const float* logits, const std::int32_t* targets,
                                             const float* dlosses, index_t V, unsigned long long* bad) {
  __shared__ float shared[kWarpSize];
  const index_t n = blockIdx.x;
  const float* x = logits + n * V;
  float* dx = dlogits + n * V;
  const float d = dlosses[n];
  if (d == 0.0f) {
    for (index_t v = threadIdx.x; v < V; v += blockDim.x) dx[v] = 0.0f;
    return;
  }
  const index_t target = targets[n];
  if (target < 0 || target >= V) {
    if (threadIdx.x == 0) atomicMin(bad, static_cast<unsigned long long>(n));
    return;
  }
  float maxv, sum;
  row_softmax_stats(x, V, shared, maxv, sum);
  const float lse = maxv + logf(sum);
  for (index_t v = threadIdx.x; v < V; v += blockDim.x) {
    const float p = expf(x[v] - lse);
    dx[v] = d * (p - (v == target ? 1.0f : 0.0f));
  }
}

// One block per sample b; threads stride over its T positions.
__global__ void per_sample_loss_kernel(float* sample_loss, float* tokens, const float* losses,
                                       const float* mask, index_t T) {
  __shared__ double shared[kWarpSize];
  const index_t b = blockIdx.x;
  double count = 0.0, sum = 0.0;
  for (index_t t = threadIdx.x; t < T; t += blockDim.x) {
    const double m = mask ? mask[b * T + t] : 1.0;
    count += m;
    sum += static_cast<double>(losses[b * T + t]) * m;
  }
  count = block_sum(count, shared);
  sum = block_sum(sum, shared);
  if (threadIdx.x == 0) {
    tokens[b] = static_cast<float>(count);
    sample_loss[b] = count == 0.0 ? 0.0f : static_cast<float>(sum / count);
  }
}

}  // namespace

void crossentropy_forward(cudaStream_t stream, float* losses, const float* logits,
                          const std::int32_t* targets, const float* mask, index_t N, index_t V,
                          unsigned long long* bad) {
  if (N == 0) return;
  crossentropy_forward_kernel<<<row_blocks(N), row_threads(V, kLossThreads), 0, stream>>>(
      losses, logits, targets, mask, V, bad);
  FLOWLM_CUDA_CHECK_LAUNCH(crossentropy_forward_kernel);
}

void crossentropy_backward(cudaStream_t stream, float* dlogits, const float* logits,
                           const std::int32_t* targets, const float* dlosses, index_t N, index_t V,
                           unsigned long long* bad) {
  if (N == 0) return;
  crossentropy_backward_kernel<<<row_blocks(N), row_threads(V, kLossThreads), 0, stream>>>(
      dlogits, logits, targets, dlosses, V, bad);
  FLOWLM_CUDA_CHECK_LAUNCH(crossentropy_backward_kernel);
}

void per_sample_loss(cudaStream_t stream, float* sample_loss, float* tokens, const float* losses,
                     const float* mask, index_t B, index_t T) {
  if (B == 0) return;
  per_sample_loss_kernel<<<row_blocks(B), row_threads(T, kLossThreads), 0, stream>>>(sample_loss, tokens,
                                                                                     losses, mask, T);
  FLOWLM_CUDA_CHECK_LAUNCH(per_sample_loss_kernel);
}

}  // namespace flowlm::kernels::cuda
