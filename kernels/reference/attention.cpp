// Reference causal self-attention (multi-head and grouped-query, optional soft-cap and sliding
// window), one (b, h, t) query row at a time, sums in double.
#include <cmath>
#include <vector>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

namespace {
struct Heads {
  index_t hs, row, out_row, koff, voff, group;
  explicit Heads(const AttentionParams& p)
      : hs(p.head_dim),
        row((p.n_head + 2 * p.n_kv_head) * p.head_dim),
        out_row(p.n_head * p.head_dim),
        koff(p.n_head * p.head_dim),
        voff((p.n_head + p.n_kv_head) * p.head_dim),
        group(p.n_head / p.n_kv_head) {}
};

double score_scale(const AttentionParams& p) {
  return p.scale > 0.0f ? static_cast<double>(p.scale) : 1.0 / std::sqrt(static_cast<double>(p.head_dim));
}

// Keys query t sees: j0 <= t2 <= t.
index_t first_key(index_t t, index_t window) { return window > 0 && t >= window ? t - window + 1 : 0; }
}  // namespace

// z[t2] = scale * q_t . k_t2, s = cap tanh(z / cap) (or z), att = softmax over visible t2;
// out_t = sum_t2 att[t2] v_t2. q head h uses kv head g = h / (NH / KVH).
void attention_forward(float* out, float* att, const float* qkv, index_t B, index_t T,
                       const AttentionParams& p) {
  const Heads H(p);
  const index_t NH = p.n_head;
  const double scale = score_scale(p), cap = p.softcap;
  std::vector<double> pre(static_cast<std::size_t>(T));
  for (index_t b = 0; b < B; ++b) {
    for (index_t h = 0; h < NH; ++h) {
      const index_t g = h / H.group;
      for (index_t t = 0; t < T; ++t) {
        const index_t j0 = first_key(t, p.window);
        const float* q = qkv + (b * T + t) * H.row + h * H.hs;
        double maxv = -INFINITY;
        for (index_t t2 = j0; t2 <= t; ++t2) {
          const float* k = qkv + (b * T + t2) * H.row + H.koff + g * H.hs;
          double s = 0.0;
          for (index_t i = 0; i < H.hs; ++i) s += static_cast<double>(q[i]) * k[i];
          s *= scale;
          if (cap > 0.0) s = cap * std::tanh(s / cap);
          pre[t2] = s;
          maxv = std::max(maxv, s);
        }
        double sum = 0.0;
        for (index_t t2 = j0; t2 <= t; ++t2) {
          pre[t2] = std::exp(pre[t2] - maxv);
          sum += pre[t2];
        }
        float* a = att + ((b * NH + h) * T + t) * T;
        for (index_t t2 = 0; t2 < T; ++t2)
          a[t2] = t2 >= j0 && t2 <= t ? static_cast<float>(pre[t2] / sum) : 0.0f;
        for (index_t i = 0; i < H.hs; ++i) {
          double s = 0.0;
          for (index_t t2 = j0; t2 <= t; ++t2)
            s += pre[t2] / sum * qkv[(b * T + t2) * H.row + H.voff + g * H.hs + i];
          out[(b * T + t) * H.out_row + h * H.hs + i] = static_cast<float>(s);
        }
      }
    }
  }
}

// datt[t2] = dout_t . v_t2;  dv_t2 += att[t2] dout_t;  dz[t2] = att[t2] (datt[t2] - sum_j att[j] datt[j])
// * (1 - tanh^2(z[t2] / cap) if soft-capped);  dq_t += scale sum_t2 dz[t2] k_t2;  dk_t2 += scale dz[t2] q_t.
void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv, const float* att,
                        index_t B, index_t T, const AttentionParams& p) {
  const Heads H(p);
  const index_t NH = p.n_head;
  const double scale = score_scale(p), cap = p.softcap;
  for (index_t b = 0; b < B; ++b) {
    for (index_t h = 0; h < NH; ++h) {
      const index_t g = h / H.group;
      for (index_t t = 0; t < T; ++t) {
        const index_t j0 = first_key(t, p.window);
        const float* a = att + ((b * NH + h) * T + t) * T;
        float* da = datt + ((b * NH + h) * T + t) * T;
        const float* dy = dout + (b * T + t) * H.out_row + h * H.hs;
        const float* q = qkv + (b * T + t) * H.row + h * H.hs;
        float* dq = dqkv + (b * T + t) * H.row + h * H.hs;
        double dot = 0.0;
        for (index_t t2 = 0; t2 < T; ++t2) {
          da[t2] = 0.0f;
          if (t2 < j0 || t2 > t) continue;
          const float* v = qkv + (b * T + t2) * H.row + H.voff + g * H.hs;
          float* dv = dqkv + (b * T + t2) * H.row + H.voff + g * H.hs;
          double s = 0.0;
          for (index_t i = 0; i < H.hs; ++i) {
            s += static_cast<double>(dy[i]) * v[i];
            dv[i] += a[t2] * dy[i];
          }
          da[t2] = static_cast<float>(s);
          dot += s * a[t2];
        }
        for (index_t t2 = j0; t2 <= t; ++t2) {
          const float* k = qkv + (b * T + t2) * H.row + H.koff + g * H.hs;
          float* dk = dqkv + (b * T + t2) * H.row + H.koff + g * H.hs;
          double dz = a[t2] * (da[t2] - dot);
          if (cap > 0.0) {
            double z = 0.0;
            for (index_t i = 0; i < H.hs; ++i) z += static_cast<double>(q[i]) * k[i];
            const double th = std::tanh(z * scale / cap);
            dz *= 1.0 - th * th;
          }
          dz *= scale;
          for (index_t i = 0; i < H.hs; ++i) {
            dq[i] += static_cast<float>(dz * k[i]);
            dk[i] += static_cast<float>(dz * q[i]);
          }
        }
      }
    }
  }
}

}  // namespace flowlm::kernels::ref
