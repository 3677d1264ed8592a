// Host causal self-attention (multi-head and grouped-query, optional logit soft-cap and sliding
// window). Per (b, h) the score and value products are GEMMs through OpenBLAS on strided views
// of qkv (leading dimension (NH + 2 KVH) hd), in blocks of kRows query rows so that a block
// multiplies only the keys it can see (k0 .. r1): about 5/8 of the full T x T work at T = 256, and
// ~2.5x faster than vectorised per-row loops even with the wasted diagonal blocks. The softmax (and
// its backward) runs between the GEMMs as one Kokkos pass over the (b, h, t) rows, and writes exact
// zeros outside the visible keys, so the GEMMs that read att / datt see the masked matrix. With
// KVH == NH, no soft-cap and no window (GPT-2) every loop is the plain causal one.
#include <cblas.h>

#include <cfloat>
#include <cmath>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::exp_approx;
using host::host_range;

namespace {
constexpr index_t kRows = 64;  // query rows per GEMM block (measured: 64 beats 32, 128 and T)
blasint bi(index_t x) { return static_cast<blasint>(x); }

// Offsets of head h's q, k and v columns in a packed qkv row, and the row widths.
struct Layout {
  index_t hs, row, out_row, koff, voff, group;
  explicit Layout(const AttentionParams& p)
      : hs(p.head_dim),
        row((p.n_head + 2 * p.n_kv_head) * p.head_dim),
        out_row(p.n_head * p.head_dim),
        koff(p.n_head * p.head_dim),
        voff((p.n_head + p.n_kv_head) * p.head_dim),
        group(p.n_head / p.n_kv_head) {}
  index_t q(index_t h) const { return h * hs; }
  index_t k(index_t h) const { return koff + (h / group) * hs; }
  index_t v(index_t h) const { return voff + (h / group) * hs; }
};

float score_scale(const AttentionParams& p) {
  return p.scale > 0.0f ? p.scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
}

// First key query row t (or a block starting at row r) can see.
KOKKOS_INLINE_FUNCTION index_t first_key(index_t t, index_t window) {
  return window > 0 && t >= window ? t - window + 1 : 0;
}

// S[r0..r1, k0..r1] = scale * Q K^T for every (b, h) block, into s (rows of T).
void scores(float* s, const float* qkv, index_t B, index_t T, index_t NH, const Layout& L, float scale,
            index_t window) {
  for (index_t bh = 0; bh < B * NH; ++bh) {
    const float* base = qkv + (bh / NH) * T * L.row;
    const float* q = base + L.q(bh % NH);
    const float* k = base + L.k(bh % NH);
    for (index_t r0 = 0; r0 < T; r0 += kRows) {
      const index_t r1 = std::min(T, r0 + kRows), k0 = first_key(r0, window);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi(r1 - r0), bi(r1 - k0), bi(L.hs), scale,
                  q + r0 * L.row, bi(L.row), k + k0 * L.row, bi(L.row), 0.0f, s + (bh * T + r0) * T + k0,
                  bi(T));
    }
  }
}
}  // namespace

// S = scale Q K^T (keys k0(t) <= t2 <= t); S = cap tanh(S / cap) if soft-capped; att = softmax_t2(S),
// 0 elsewhere;  out = att V.
void attention_forward(float* out, float* att, const float* qkv, index_t B, index_t T,
                       const AttentionParams& p) {
  if (B <= 0 || T <= 0) return;
  const Layout L(p);
  const index_t NH = p.n_head, window = p.window;
  const float cap = p.softcap;
  scores(att, qkv, B, T, NH, L, score_scale(p), window);
  Kokkos::parallel_for("flowlm::attention_softmax", host_range(B * NH * T), [=](const index_t row) {
    const index_t t = row % T, j0 = first_key(t, window);
    float* a = att + row * T;
    if (cap > 0.0f) {
      for (index_t t2 = j0; t2 <= t; ++t2) a[t2] = cap * std::tanh(a[t2] / cap);
    }
    float m = -FLT_MAX;
#pragma omp simd reduction(max : m)
    for (index_t t2 = j0; t2 <= t; ++t2) m = std::max(m, a[t2]);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (index_t t2 = j0; t2 <= t; ++t2) {
      const float e = exp_approx(a[t2] - m);
      a[t2] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
    for (index_t t2 = j0; t2 <= t; ++t2) a[t2] *= inv;
    for (index_t t2 = 0; t2 < j0; ++t2) a[t2] = 0.0f;
    for (index_t t2 = t + 1; t2 < T; ++t2) a[t2] = 0.0f;
  });
  for (index_t bh = 0; bh < B * NH; ++bh) {
    const index_t b = bh / NH, h = bh % NH;
    const float* v = qkv + b * T * L.row + L.v(h);
    for (index_t r0 = 0; r0 < T; r0 += kRows) {
      const index_t r1 = std::min(T, r0 + kRows), k0 = first_key(r0, window);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi(r1 - r0), bi(L.hs), bi(r1 - k0), 1.0f,
                  att + (bh * T + r0) * T + k0, bi(T), v + k0 * L.row, bi(L.row), 0.0f,
                  out + (b * T + r0) * L.out_row + L.q(h), bi(L.out_row));
    }
  }
}

// dA = dOut V^T;  dV += att^T dOut;  dS = att * (dA - rowsum(att * dA)) * scale (kept in datt), times
// 1 - tanh^2(Z / cap) with Z = scale Q K^T recomputed when soft-capped;  dQ += dS K;  dK += dS^T Q.
void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv, const float* att,
                        index_t B, index_t T, const AttentionParams& p) {
  if (B <= 0 || T <= 0) return;
  const Layout L(p);
  const index_t NH = p.n_head, window = p.window;
  const float scale = score_scale(p), cap = p.softcap;
  for (index_t bh = 0; bh < B * NH; ++bh) {
    const index_t b = bh / NH, h = bh % NH;
    const float* v = qkv + b * T * L.row + L.v(h);
    float* dv = dqkv + b * T * L.row + L.v(h);
    const float* dy = dout + b * T * L.out_row + L.q(h);
    for (index_t r0 = 0; r0 < T; r0 += kRows) {
      const index_t r1 = std::min(T, r0 + kRows), k0 = first_key(r0, window);
      const float* a = att + (bh * T + r0) * T + k0;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi(r1 - r0), bi(r1 - k0), bi(L.hs), 1.0f,
                  dy + r0 * L.out_row, bi(L.out_row), v + k0 * L.row, bi(L.row), 0.0f,
                  datt + (bh * T + r0) * T + k0, bi(T));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bi(r1 - k0), bi(L.hs), bi(r1 - r0), 1.0f, a, bi(T),
                  dy + r0 * L.out_row, bi(L.out_row), 1.0f, dv + k0 * L.row, bi(L.row));
    }
  }
  // The soft-capped scores are recomputed rather than saved: only Gemma-2 pays for them.
  std::vector<float> zbuf(cap > 0.0f ? static_cast<std::size_t>(B * NH * T * T) : 0);
  if (cap > 0.0f) scores(zbuf.data(), qkv, B, T, NH, L, scale, window);
  const float* z = zbuf.data();
  Kokkos::parallel_for("flowlm::attention_softmax_backward", host_range(B * NH * T), [=](const index_t row) {
    const index_t t = row % T, j0 = first_key(t, window);
    const float* a = att + row * T;
    float* da = datt + row * T;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (index_t t2 = j0; t2 <= t; ++t2) dot += a[t2] * da[t2];
    for (index_t t2 = j0; t2 <= t; ++t2) da[t2] = a[t2] * (da[t2] - dot) * scale;
    if (cap > 0.0f) {
      const float* zr = z + row * T;
      for (index_t t2 = j0; t2 <= t; ++t2) {
        const float th = std::tanh(zr[t2] / cap);
        da[t2] *= 1.0f - th * th;
      }
    }
    for (index_t t2 = 0; t2 < j0; ++t2) da[t2] = 0.0f;
    for (index_t t2 = t + 1; t2 < T; ++t2) da[t2] = 0.0f;
  });
  for (index_t bh = 0; bh < B * NH; ++bh) {
    const index_t b = bh / NH, h = bh % NH;
    const float* q = qkv + b * T * L.row + L.q(h);
    const float* k = qkv + b * T * L.row + L.k(h);
    float* dq = dqkv + b * T * L.row + L.q(h);
    float* dk = dqkv + b * T * L.row + L.k(h);
    for (index_t r0 = 0; r0 < T; r0 += kRows) {
      const index_t r1 = std::min(T, r0 + kRows), k0 = first_key(r0, window);
      const float* ds = datt + (bh * T + r0) * T + k0;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi(r1 - r0), bi(L.hs), bi(r1 - k0), 1.0f, ds,
                  bi(T), k + k0 * L.row, bi(L.row), 1.0f, dq + r0 * L.row, bi(L.row));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bi(r1 - k0), bi(L.hs), bi(r1 - r0), 1.0f, ds,
                  bi(T), q + r0 * L.row, bi(L.row), 1.0f, dk + k0 * L.row, bi(L.row));
    }
  }
}

}  // namespace flowlm::kernels
