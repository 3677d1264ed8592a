#include <cmath>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"

namespace flowlm::kernels::cuda {

namespace {

constexpr int kAttentionThreads = 128;

// The packed qkv layout: a row per (b, t) of NH q heads, then KVH k heads, then KVH v heads of hd
// channels; q head h reads kv head h / group.
struct Layout {
  index_t T, NH, KVH, hd, row, group;
  float scale, cap;
  index_t window;

  __device__ const float* q(const float* qkv, index_t b, index_t t, index_t h) const {
    return qkv + (b * T + t) * row + h * hd;
  }
  __device__ const float* k(const float* qkv, index_t b, index_t t, index_t g) const {
    return qkv + (b * T + t) * row + (NH + g) * hd;
  }
  __device__ const float* v(const float* qkv, index_t b, index_t t, index_t g) const {
    return qkv + (b * T + t) * row + (NH + KVH + g) * hd;
  }
  // Query t sees the keys j0(t) <= t2 <= t; key t2 is seen by the queries t2 <= t < t_end(t2).
  __device__ index_t first_key(index_t t) const { return window > 0 && t >= window ? t - window + 1 : 0; }
  __device__ index_t last_query_end(index_t t2) const { return window > 0 ? min(T, t2 + window) : T; }
};

Layout make_layout(index_t T, const AttentionParams& p) {
  const float scale = p.scale > 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
  return Layout{T,
                p.n_head,
                p.n_kv_head,
                p.head_dim,
                (p.n_head + 2 * p.n_kv_head) * p.head_dim,
                p.n_head / p.n_kv_head,
                scale,
                p.softcap,
                p.window};
}

__device__ float dot(const float* a, const float* b, index_t n) {
  float s = 0.0f;
  for (index_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// One block per query row r = (b NH + h) T + t, i.e. one row of att. Threads own keys t2 = tid,
// tid + blockDim, ... while they score and normalise (the row of att is their scratch), then
// channels i of out while they sum att[t2] v[t2][i].
__global__ void attention_forward_kernel(float* out, float* att, const float* qkv, Layout L) {
  extern __shared__ float q[];  // hd floats: this row's query
  __shared__ float shared[kWarpSize];
  const index_t r = blockIdx.x, t = r % L.T, h = (r / L.T) % L.NH, b = r / (L.T * L.NH), g = h / L.group;
  const index_t j0 = L.first_key(t);
  for (index_t i = threadIdx.x; i < L.hd; i += blockDim.x) q[i] = L.q(qkv, b, t, h)[i];
  __syncthreads();
  float* a = att + r * L.T;
  // s = scale q.k (soft-capped: cap tanh(s / cap)) for the visible keys, and their maximum.
  float maxv = -INFINITY;
  for (index_t t2 = threadIdx.x; t2 < L.T; t2 += blockDim.x) {
    if (t2 < j0 || t2 > t) continue;
    float s = L.scale * dot(q, L.k(qkv, b, t2, g), L.hd);
    if (L.cap > 0.0f) s = L.cap * tanhf(s / L.cap);
    a[t2] = s;
    maxv = fmaxf(maxv, s);
  }
  maxv = block_max(maxv, shared);
  float sum = 0.0f;
  for (index_t t2 = threadIdx.x; t2 < L.T; t2 += blockDim.x) {
    if (t2 < j0 || t2 > t) continue;
    const float e = expf(a[t2] - maxv);
    a[t2] = e;
    sum += e;
  }
  sum = block_sum(sum, shared);
  for (index_t t2 = threadIdx.x; t2 < L.T; t2 += blockDim.x) a[t2] = t2 >= j0 && t2 <= t ? a[t2] / sum : 0.0f;
  __syncthreads();  // the whole row of att is written (and visible to the block) before it is read
  for (index_t i = threadIdx.x; i < L.hd; i += blockDim.x) {
    float s = 0.0f;
    for (index_t t2 = j0; t2 <= t; ++t2) s += a[t2] * L.v(qkv, b, t2, g)[i];
    out[(b * L.T + t) * L.NH * L.hd + h * L.hd + i] = s;
  }
}

// Backward, per query row r = (b NH + h) T + t (as forward):
//   datt[t2] = dout_t . v_t2,  dz[t2] = att[t2] (datt[t2] - sum_j att[j] datt[j]) (* 1 - tanh^2 when
//   soft-capped) * scale, stored over datt;  dq_t += sum_t2 dz[t2] k_t2.
__global__ void attention_backward_query_kernel(float* dqkv, float* datt, const float* dout, const float* qkv,
                                                const float* att, Layout L) {
  extern __shared__ float qdy[];  // 2 hd floats: this row's query, then its output gradient
  __shared__ float shared[kWarpSize];
  float* q = qdy;
  float* dy = qdy + L.hd;
  const index_t r = blockIdx.x, t = r % L.T, h = (r / L.T) % L.NH, b = r / (L.T * L.NH), g = h / L.group;
  const index_t j0 = L.first_key(t);
  for (index_t i = threadIdx.x; i < L.hd; i += blockDim.x) {
    q[i] = L.q(qkv, b, t, h)[i];
    dy[i] = dout[(b * L.T + t) * L.NH * L.hd + h * L.hd + i];
  }
  __syncthreads();
  const float* a = att + r * L.T;
  float* da = datt + r * L.T;
  float local = 0.0f;
  for (index_t t2 = threadIdx.x; t2 < L.T; t2 += blockDim.x) {
    if (t2 < j0 || t2 > t) {
      da[t2] = 0.0f;
      continue;
    }
    const float d = dot(dy, L.v(qkv, b, t2, g), L.hd);
    da[t2] = d;
    local += d * a[t2];
  }
  const float a_da = block_sum(local, shared);
  for (index_t t2 = threadIdx.x; t2 < L.T; t2 += blockDim.x) {
    if (t2 < j0 || t2 > t) continue;
    float dz = a[t2] * (da[t2] - a_da);
    if (L.cap > 0.0f) {
      const float th = tanhf(L.scale * dot(q, L.k(qkv, b, t2, g), L.hd) / L.cap);
      dz *= 1.0f - th * th;
    }
    da[t2] = dz * L.scale;
  }
  __syncthreads();  // dz of every visible key is written before the threads read each other's
  float* dq = dqkv + (b * L.T + t) * L.row + h * L.hd;
  for (index_t i = threadIdx.x; i < L.hd; i += blockDim.x) {
    float s = 0.0f;
    for (index_t t2 = j0; t2 <= t; ++t2) s += da[t2] * L.k(qkv, b, t2, g)[i];
    dq[i] += s;
  }
}

// Backward, per key row (b, g, t2) of a kv head g (block (b KVH + g) T + t2), threads over channels i:
// gathers over the group's q heads h and the queries t that see t2 (no atomics, fixed order):
//   dk_t2 += sum_h sum_t dz[h][t][t2] q_t,h;   dv_t2 += sum_h sum_t att[h][t][t2] dout_t,h.
__global__ void attention_backward_key_kernel(float* dqkv, const float* datt, const float* dout,
                                              const float* qkv, const float* att, Layout L) {
  const index_t r = blockIdx.x, t2 = r % L.T, g = (r / L.T) % L.KVH, b = r / (L.T * L.KVH);
  const index_t t_end = L.last_query_end(t2);
  float* dk = dqkv + (b * L.T + t2) * L.row + (L.NH + g) * L.hd;
  float* dv = dqkv + (b * L.T + t2) * L.row + (L.NH + L.KVH + g) * L.hd;
  for (index_t i = threadIdx.x; i < L.hd; i += blockDim.x) {
    float sk = 0.0f, sv = 0.0f;
    for (index_t h = g * L.group; h < (g + 1) * L.group; ++h) {
      for (index_t t = t2; t < t_end; ++t) {
        const index_t at = ((b * L.NH + h) * L.T + t) * L.T + t2;
        sk += datt[at] * L.q(qkv, b, t, h)[i];
        sv += att[at] * dout[(b * L.T + t) * L.NH * L.hd + h * L.hd + i];
      }
    }
    dk[i] += sk;
    dv[i] += sv;
  }
}

}  // namespace

void attention_forward(cudaStream_t stream, float* out, float* att, const float* qkv, index_t B, index_t T,
                       const AttentionParams& p) {
  if (B * T == 0) return;
  const Layout L = make_layout(T, p);
  const std::size_t shared = static_cast<std::size_t>(L.hd) * sizeof(float);
  attention_forward_kernel<<<row_blocks(B * p.n_head * T), kAttentionThreads, shared, stream>>>(out, att, qkv,
                                                                                                L);
  FLOWLM_CUDA_CHECK_LAUNCH(attention_forward_kernel);
}

void attention_backward(cudaStream_t stream, float* dqkv, float* datt, const float* dout, const float* qkv,
                        const float* att, index_t B, index_t T, const AttentionParams& p) {
  if (B * T == 0) return;
  const Layout L = make_layout(T, p);
  const std::size_t shared = 2 * static_cast<std::size_t>(L.hd) * sizeof(float);
  attention_backward_query_kernel<<<row_blocks(B * p.n_head * T), kAttentionThreads, shared, stream>>>(
      dqkv, datt, dout, qkv, att, L);
  FLOWLM_CUDA_CHECK_LAUNCH(attention_backward_query_kernel);
  attention_backward_key_kernel<<<row_blocks(B * p.n_kv_head * T), row_threads(L.hd, kAttentionThreads), 0,
                                  stream>>>(dqkv, datt, dout, qkv, att, L);
  FLOWLM_CUDA_CHECK_LAUNCH(attention_backward_key_kernel);
}

}  // namespace flowlm::kernels::cuda
