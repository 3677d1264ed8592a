// Reference inference attention over a key/value cache [B, KVH, S, hd]: the cache writes, and one
// (b, h, t) query row at a time over the cached keys, sums in double (as reference attention).
#include <cmath>
#include <vector>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

namespace {
index_t first_key(index_t i, index_t window) { return window > 0 && i >= window ? i - window + 1 : 0; }
}  // namespace

// k_cache[b, g, start[b] + t, :] = k head g of qkv[b, t]; the same for v.
void kv_cache_write(float* k_cache, float* v_cache, const float* qkv, const std::int32_t* start, index_t B,
                    index_t T, index_t S, const AttentionParams& p) {
  const index_t hd = p.head_dim, NH = p.n_head, KVH = p.n_kv_head, row = (NH + 2 * KVH) * hd;
  for (index_t b = 0; b < B; ++b)
    for (index_t t = 0; t < T; ++t)
      for (index_t g = 0; g < KVH; ++g) {
        const float* src = qkv + (b * T + t) * row;
        const index_t at = ((b * KVH + g) * S + start[b] + t) * hd;
        for (index_t i = 0; i < hd; ++i) {
          k_cache[at + i] = src[(NH + g) * hd + i];
          v_cache[at + i] = src[(NH + KVH + g) * hd + i];
        }
      }
}

// s_j = scale * q . k_j (cap tanh(s / cap) when soft-capped) over first(i) <= j <= i, i = start[b] + t;
// out = sum_j softmax(s)_j v_j. q head h reads kv head h / (NH / KVH).
void attention_cached(float* out, const float* qkv, const float* k_cache, const float* v_cache,
                      const std::int32_t* start, index_t B, index_t T, index_t S, const AttentionParams& p) {
  const index_t hd = p.head_dim, NH = p.n_head, KVH = p.n_kv_head, row = (NH + 2 * KVH) * hd;
  const index_t group = NH / KVH;
  const double scale =
      p.scale > 0.0f ? static_cast<double>(p.scale) : 1.0 / std::sqrt(static_cast<double>(hd));
  const double cap = p.softcap;
  std::vector<double> w(static_cast<std::size_t>(S));
  for (index_t b = 0; b < B; ++b)
    for (index_t h = 0; h < NH; ++h)
      for (index_t t = 0; t < T; ++t) {
        const index_t i = start[b] + t, j0 = first_key(i, p.window), g = h / group;
        const float* q = qkv + (b * T + t) * row + h * hd;
        const float* K = k_cache + (b * KVH + g) * S * hd;
        const float* Vc = v_cache + (b * KVH + g) * S * hd;
        double maxv = -INFINITY;
        for (index_t j = j0; j <= i; ++j) {
          double s = 0.0;
          for (index_t c = 0; c < hd; ++c) s += static_cast<double>(q[c]) * K[j * hd + c];
          s *= scale;
          if (cap > 0.0) s = cap * std::tanh(s / cap);
          w[static_cast<std::size_t>(j)] = s;
          maxv = std::max(maxv, s);
        }
        double sum = 0.0;
        for (index_t j = j0; j <= i; ++j) {
          w[static_cast<std::size_t>(j)] = std::exp(w[static_cast<std::size_t>(j)] - maxv);
          sum += w[static_cast<std::size_t>(j)];
        }
        for (index_t c = 0; c < hd; ++c) {
          double acc = 0.0;
          for (index_t j = j0; j <= i; ++j) acc += w[static_cast<std::size_t>(j)] / sum * Vc[j * hd + c];
          out[(b * T + t) * NH * hd + h * hd + c] = static_cast<float>(acc);
        }
      }
}

}  // namespace flowlm::kernels::ref
