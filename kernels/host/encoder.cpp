// Host token + position embedding.
#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::host_range;

// out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:], one row per work item.
void encoder_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe, index_t B,
                     index_t T, index_t C) {
  Kokkos::parallel_for("flowlm::encoder_forward", host_range(B * T), [=](const index_t bt) {
    const float* e = wte + static_cast<index_t>(tokens[bt]) * C;
    const float* p = wpe + (bt % T) * C;
    float* o = out + bt * C;
    for (index_t c = 0; c < C; ++c) o[c] = e[c] + p[c];
  });
}

// dwte[tokens[b,t],:] += dout[b,t,:], dwpe[t,:] += dout[b,t,:]. Tokens repeat, so rows of dwte
// collide: work items own blocks of channels and walk every (b, t) in order (race-free, deterministic).
void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens, index_t B,
                      index_t T, index_t C) {
  constexpr index_t kCols = 32;
  const index_t nblk = (C + kCols - 1) / kCols;
  Kokkos::parallel_for("flowlm::encoder_backward", host_range(nblk), [=](const index_t blk) {
    const index_t c0 = blk * kCols, c1 = std::min(C, c0 + kCols);
    for (index_t bt = 0; bt < B * T; ++bt) {
      const float* d = dout + bt * C;
      float* ge = dwte + static_cast<index_t>(tokens[bt]) * C;
      float* gp = dwpe + (bt % T) * C;
      for (index_t c = c0; c < c1; ++c) {
        ge[c] += d[c];
        gp[c] += d[c];
      }
    }
  });
}

}  // namespace flowlm::kernels
