#include <cmath>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kv_cache.cuh"

namespace flowlm::kernels::cuda {

namespace {

constexpr int kCachedThreads = 128;

// One thread per element of the written k and v rows: e = ((b T + t) KVH + g) hd + i.
__global__ void kv_cache_write_kernel(float* k_cache, float* v_cache, const float* qkv,
                                      const std::int32_t* start, index_t B, index_t T, index_t S, index_t NH,
                                      index_t KVH, index_t hd) {
  const index_t row = (NH + 2 * KVH) * hd;
  for (index_t e = grid_index(); e < B * T * KVH * hd; e += grid_stride()) {
    const index_t i = e % hd, g = (e / hd) % KVH, bt = e / (hd * KVH), b = bt / T, t = bt % T;
    const index_t at = ((b * KVH + g) * S + start[b] + t) * hd + i;
    k_cache[at] = qkv[bt * row + (NH + g) * hd + i];
    v_cache[at] = qkv[bt * row + (NH + KVH + g) * hd + i];
  }
}

// One block per query row r = (b NH + h) T + t at position pos = start[b] + t. Threads own cached keys
// j = tid, tid + blockDim, ... while they score and normalise (scores in dynamic shared memory of S
// floats after the query's hd), then channels c of out while they sum w[j] v[j][c].
__global__ void attention_cached_kernel(float* out, const float* qkv, const float* k_cache,
                                        const float* v_cache, const std::int32_t* start, index_t T, index_t S,
                                        index_t NH, index_t KVH, index_t hd, float scale, float cap,
                                        index_t window) {
  extern __shared__ float smem[];
  float* q = smem;       // hd
  float* w = smem + hd;  // S
  __shared__ float shared[kWarpSize];
  const index_t r = blockIdx.x, t = r % T, h = (r / T) % NH, b = r / (T * NH), g = h / (NH / KVH);
  const index_t pos = start[b] + t, j0 = window > 0 && pos >= window ? pos - window + 1 : 0;
  const index_t row = (NH + 2 * KVH) * hd;
  for (index_t c = threadIdx.x; c < hd; c += blockDim.x) q[c] = qkv[(b * T + t) * row + h * hd + c];
  __syncthreads();
  const float* K = k_cache + (b * KVH + g) * S * hd;
  const float* V = v_cache + (b * KVH + g) * S * hd;
  float maxv = -INFINITY;
  for (index_t j = j0 + threadIdx.x; j <= pos; j += blockDim.x) {
    float s = 0.0f;
    for (index_t c = 0; c < hd; ++c) s += q[c] * K[j * hd + c];
    s *= scale;
    if (cap > 0.0f) s = cap * tanhf(s / cap);
    w[j] = s;
    maxv = fmaxf(maxv, s);
  }
  maxv = block_max(maxv, shared);
  float sum = 0.0f;
  for (index_t j = j0 + threadIdx.x; j <= pos; j += blockDim.x) {
    const float e = expf(w[j] - maxv);
    w[j] = e;
    sum += e;
  }
  sum = block_sum(sum, shared);
  __syncthreads();  // every weight is written before the threads read each other's
  for (index_t c = threadIdx.x; c < hd; c += blockDim.x) {
    float acc = 0.0f;
    for (index_t j = j0; j <= pos; ++j) acc += w[j] * V[j * hd + c];
    out[(b * T + t) * NH * hd + h * hd + c] = acc / sum;
  }
}

}  // namespace

void kv_cache_write(cudaStream_t stream, float* k_cache, float* v_cache, const float* qkv,
                    const std::int32_t* start, index_t B, index_t T, index_t S, const AttentionParams& p) {
  const index_t n = B * T * p.n_kv_head * p.head_dim;
  if (n == 0) return;
  kv_cache_write_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(
      k_cache, v_cache, qkv, start, B, T, S, p.n_head, p.n_kv_head, p.head_dim);
  FLOWLM_CUDA_CHECK_LAUNCH(kv_cache_write_kernel);
}

void attention_cached(cudaStream_t stream, float* out, const float* qkv, const float* k_cache,
                      const float* v_cache, const std::int32_t* start, index_t B, index_t T, index_t S,
                      const AttentionParams& p) {
  if (B * T == 0) return;
  const float scale = p.scale > 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
  const std::size_t shared = static_cast<std::size_t>(p.head_dim + S) * sizeof(float);
  if (shared > 48 * 1024)
    fail<Error>(
        "cuda: attention_cached: a cache of {} positions x head_dim {} needs {} bytes of shared memory "
        "per block, more than 48 KiB",
        S, p.head_dim, shared);
  attention_cached_kernel<<<row_blocks(B * p.n_head * T), kCachedThreads, shared, stream>>>(
      out, qkv, k_cache, v_cache, start, T, S, p.n_head, p.n_kv_head, p.head_dim, scale, p.softcap, p.window);
  FLOWLM_CUDA_CHECK_LAUNCH(attention_cached_kernel);
}

}  // namespace flowlm::kernels::cuda
