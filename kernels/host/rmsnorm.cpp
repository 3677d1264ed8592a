// Host RMSNorm (Llama: x * rstd * w; Gemma: x * rstd * (1 + w)): one row per work item forward;
// backward in fixed row chunks with per-chunk partial weight gradients added in chunk order
// (bitwise reproducible), as layernorm.
#include <cmath>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::host_range;

// rstd = 1 / sqrt(sum x^2 / C + eps), out = x * rstd * (w + offset), offset = 1 for plus_one else 0.
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, index_t N, index_t C,
                     float eps, bool plus_one) {
  const float offset = plus_one ? 1.0f : 0.0f;
  Kokkos::parallel_for("flowlm::rmsnorm_forward", host_range(N), [=](const index_t n) {
    const float* x = inp + n * C;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (index_t c = 0; c < C; ++c) ss += x[c] * x[c];
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
    float* o = out + n * C;
    for (index_t c = 0; c < C; ++c) o[c] = x[c] * r * (weight[c] + offset);
    rstd[n] = r;
  });
}

// xhat = x * rstd, g = (w + offset) * dout: dinp += rstd * (g - xhat * mean(g * xhat)),
// dweight += sum_n dout * xhat (the offset is a constant, so d/dw is the same for both forms).
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, index_t N, index_t C, bool plus_one) {
  if (N <= 0) return;
  const float offset = plus_one ? 1.0f : 0.0f;
  const index_t chunks = std::min(N, host::kRowChunks);
  const index_t per = (N + chunks - 1) / chunks;
  std::vector<float> partial(static_cast<std::size_t>(chunks * C));
  float* part = partial.data();
  Kokkos::parallel_for("flowlm::rmsnorm_backward", host_range(chunks), [=](const index_t k) {
    float* pw = part + k * C;
    for (index_t c = 0; c < C; ++c) pw[c] = 0.0f;
    const index_t end = std::min(N, (k + 1) * per);
    for (index_t n = k * per; n < end; ++n) {
      const float* x = inp + n * C;
      const float* dy = dout + n * C;
      float* dx = dinp + n * C;
      const float r = rstd[n];
      float gx_sum = 0.0f;
#pragma omp simd reduction(+ : gx_sum)
      for (index_t c = 0; c < C; ++c) gx_sum += (weight[c] + offset) * dy[c] * x[c] * r;
      const float gx_mean = gx_sum / static_cast<float>(C);
      for (index_t c = 0; c < C; ++c) {
        const float xhat = x[c] * r;
        dx[c] += r * ((weight[c] + offset) * dy[c] - xhat * gx_mean);
        pw[c] += dy[c] * xhat;
      }
    }
  });
  host::add_chunk_partials("flowlm::rmsnorm_backward_weight", dweight, part, chunks, C);
}

}  // namespace flowlm::kernels
