// Host inference attention over a key/value cache [B, KVH, S, hd]: the cache writes are row copies,
// and attention_cached runs one work item per (b, h) pair over its T query rows (decoding steps
// have T = 1), each row a vectorised pass over its visible cached keys: scores, softmax (the same
// exp approximation as attention_forward), then the weighted sum of the values.
#include <cfloat>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::exp_approx;
using host::host_range;

namespace {
KOKKOS_INLINE_FUNCTION index_t first_key(index_t i, index_t window) {
  return window > 0 && i >= window ? i - window + 1 : 0;
}
}  // namespace

void kv_cache_write(float* k_cache, float* v_cache, const float* qkv, const std::int32_t* start, index_t B,
                    index_t T, index_t S, const AttentionParams& p) {
  const index_t hd = p.head_dim, NH = p.n_head, KVH = p.n_kv_head, row = (NH + 2 * KVH) * hd;
  Kokkos::parallel_for("flowlm::kv_cache_write", host_range(B * T * KVH), [=](const index_t r) {
    const index_t g = r % KVH, t = (r / KVH) % T, b = r / (KVH * T);
    const float* src = qkv + (b * T + t) * row;
    const index_t at = ((b * KVH + g) * S + start[b] + t) * hd;
    std::memcpy(k_cache + at, src + (NH + g) * hd, static_cast<std::size_t>(hd) * sizeof(float));
    std::memcpy(v_cache + at, src + (NH + KVH + g) * hd, static_cast<std::size_t>(hd) * sizeof(float));
  });
}

void attention_cached(float* out, const float* qkv, const float* k_cache, const float* v_cache,
                      const std::int32_t* start, index_t B, index_t T, index_t S, const AttentionParams& p) {
  if (B <= 0 || T <= 0) return;
  const index_t hd = p.head_dim, NH = p.n_head, KVH = p.n_kv_head, row = (NH + 2 * KVH) * hd;
  const index_t group = NH / KVH, window = p.window;
  const float scale = p.scale > 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(hd));
  const float cap = p.softcap;
  std::vector<float> scratch(static_cast<std::size_t>(B * NH * S));
  float* w_all = scratch.data();
  Kokkos::parallel_for("flowlm::attention_cached", host_range(B * NH), [=](const index_t bh) {
    const index_t b = bh / NH, h = bh % NH, g = h / group;
    const float* K = k_cache + (b * KVH + g) * S * hd;
    const float* Vc = v_cache + (b * KVH + g) * S * hd;
    float* w = w_all + bh * S;
    for (index_t t = 0; t < T; ++t) {
      const index_t i = start[b] + t, j0 = first_key(i, window);
      const float* q = qkv + (b * T + t) * row + h * hd;
      float m = -FLT_MAX;
      for (index_t j = j0; j <= i; ++j) {
        const float* k = K + j * hd;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (index_t c = 0; c < hd; ++c) s += q[c] * k[c];
        s *= scale;
        if (cap > 0.0f) s = cap * std::tanh(s / cap);
        w[j] = s;
        m = std::max(m, s);
      }
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (index_t j = j0; j <= i; ++j) {
        const float e = exp_approx(w[j] - m);
        w[j] = e;
        sum += e;
      }
      const float inv = 1.0f / sum;
      float* y = out + (b * T + t) * NH * hd + h * hd;
      for (index_t c = 0; c < hd; ++c) y[c] = 0.0f;
      for (index_t j = j0; j <= i; ++j) {
        const float a = w[j] * inv;
        const float* v = Vc + j * hd;
#pragma omp simd
        for (index_t c = 0; c < hd; ++c) y[c] += a * v[c];
      }
    }
  });
}

}  // namespace flowlm::kernels
