// Host layernorm: one row per work item forward; backward in fixed row chunks with per-chunk
// partial weight/bias gradients added in chunk order (bitwise reproducible).
#include <cmath>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::host_range;

// mean = sum x / C, var = sum (x - mean)^2 / C (two passes: no cancellation), rstd = 1/sqrt(var + eps),
// out = (x - mean) * rstd * weight + bias.
void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, index_t N, index_t C, float eps) {
  Kokkos::parallel_for("flowlm::layernorm_forward", host_range(N), [=](const index_t n) {
    const float* x = inp + n * C;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (index_t c = 0; c < C; ++c) s += x[c];
    const float m = s / static_cast<float>(C);
    float v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (index_t c = 0; c < C; ++c) v += (x[c] - m) * (x[c] - m);
    const float r = 1.0f / std::sqrt(v / static_cast<float>(C) + eps);
    float* o = out + n * C;
    for (index_t c = 0; c < C; ++c) o[c] = (x[c] - m) * r * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = r;
  });
}

// xhat = (x - mean) * rstd, g = weight * dout:
// dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)), dweight += sum_n dout * xhat, dbias += sum_n dout.
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, index_t N, index_t C) {
  if (N <= 0) return;
  const index_t chunks = std::min(N, host::kRowChunks);
  const index_t per = (N + chunks - 1) / chunks;
  std::vector<float> partial(static_cast<std::size_t>(2 * chunks * C));
  float* part = partial.data();
  Kokkos::parallel_for("flowlm::layernorm_backward", host_range(chunks), [=](const index_t k) {
    float* pw = part + 2 * k * C;
    float* pb = pw + C;
    for (index_t c = 0; c < 2 * C; ++c) pw[c] = 0.0f;
    const index_t end = std::min(N, (k + 1) * per);
    for (index_t n = k * per; n < end; ++n) {
      const float* x = inp + n * C;
      const float* dy = dout + n * C;
      float* dx = dinp + n * C;
      const float m = mean[n], r = rstd[n];
      float g_sum = 0.0f, gx_sum = 0.0f;
#pragma omp simd reduction(+ : g_sum, gx_sum)
      for (index_t c = 0; c < C; ++c) {
        const float g = weight[c] * dy[c];
        g_sum += g;
        gx_sum += g * (x[c] - m) * r;
      }
      const float g_mean = g_sum / static_cast<float>(C), gx_mean = gx_sum / static_cast<float>(C);
      for (index_t c = 0; c < C; ++c) {
        const float xhat = (x[c] - m) * r;
        dx[c] += r * (weight[c] * dy[c] - g_mean - xhat * gx_mean);
        pw[c] += dy[c] * xhat;
        pb[c] += dy[c];
      }
    }
  });
  Kokkos::parallel_for("flowlm::layernorm_backward_params", host_range(C), [=](const index_t c) {
    float sw = 0.0f, sb = 0.0f;
    for (index_t k = 0; k < chunks; ++k) {
      sw += part[2 * k * C + c];
      sb += part[2 * k * C + C + c];
    }
    dweight[c] += sw;
    dbias[c] += sb;
  });
}

}  // namespace flowlm::kernels
