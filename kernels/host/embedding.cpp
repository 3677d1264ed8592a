// Host token (+ position) embedding.
#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::host_range;

// out[b,t,:] = scale * wte[tokens[b,t],:] + wpe[t,:], one row per work item. scale == 1 multiplies
// exactly, so GPT-2 (wte + wpe) gets the same bits as a plain add.
void embedding_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe, index_t B,
                       index_t T, index_t C, float scale) {
  Kokkos::parallel_for("flowlm::embedding_forward", host_range(B * T), [=](const index_t bt) {
    const float* e = wte + static_cast<index_t>(tokens[bt]) * C;
    float* o = out + bt * C;
    if (wpe) {
      const float* p = wpe + (bt % T) * C;
      for (index_t c = 0; c < C; ++c) o[c] = scale * e[c] + p[c];
    } else {
      for (index_t c = 0; c < C; ++c) o[c] = scale * e[c];
    }
  });
}

// dwte[tokens[b,t],:] += scale * dout[b,t,:], dwpe[t,:] += dout[b,t,:]. Tokens repeat, so rows of dwte
// collide: work items own blocks of channels and walk every (b, t) in order (race-free, deterministic).
void embedding_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens, index_t B,
                        index_t T, index_t C, float scale) {
  constexpr index_t kCols = 32;
  const index_t nblk = (C + kCols - 1) / kCols;
  Kokkos::parallel_for("flowlm::embedding_backward", host_range(nblk), [=](const index_t blk) {
    const index_t c0 = blk * kCols, c1 = std::min(C, c0 + kCols);
    for (index_t bt = 0; bt < B * T; ++bt) {
      const float* d = dout + bt * C;
      float* ge = dwte + static_cast<index_t>(tokens[bt]) * C;
      for (index_t c = c0; c < c1; ++c) ge[c] += scale * d[c];
      if (dwpe) {
        float* gp = dwpe + (bt % T) * C;
        for (index_t c = c0; c < c1; ++c) gp[c] += d[c];
      }
    }
  });
}

}  // namespace flowlm::kernels
