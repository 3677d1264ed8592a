// Reference layernorm, statistics in double.
// mean = sum x / C, var = sum (x - mean)^2 / C, out = (x - mean) / sqrt(var + eps) * weight + bias.
#include <cmath>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                       const float* bias, index_t N, index_t C, float eps) {
  for (index_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    double m = 0.0;
    for (index_t c = 0; c < C; ++c) m += x[c];
    m /= static_cast<double>(C);
    double var = 0.0;
    for (index_t c = 0; c < C; ++c) var += (x[c] - m) * (x[c] - m);
    var /= static_cast<double>(C);
    const double s = 1.0 / std::sqrt(var + static_cast<double>(eps));
    for (index_t c = 0; c < C; ++c) {
      out[n * C + c] = static_cast<float>((x[c] - m) * s * weight[c] + bias[c]);
    }
    mean[n] = static_cast<float>(m);
    rstd[n] = static_cast<float>(s);
  }
}

// With xhat = (x - mean) * rstd and g = weight * dout:
// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dweight += dout * xhat, dbias += dout.
void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                        const float* weight, const float* mean, const float* rstd, index_t N, index_t C) {
  for (index_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    const float* dy = dout + n * C;
    double g_mean = 0.0, gx_mean = 0.0;
    for (index_t c = 0; c < C; ++c) {
      const double xhat = (static_cast<double>(x[c]) - mean[n]) * rstd[n];
      const double g = static_cast<double>(weight[c]) * dy[c];
      g_mean += g;
      gx_mean += g * xhat;
    }
    g_mean /= static_cast<double>(C);
    gx_mean /= static_cast<double>(C);
    for (index_t c = 0; c < C; ++c) {
      const double xhat = (static_cast<double>(x[c]) - mean[n]) * rstd[n];
      const double g = static_cast<double>(weight[c]) * dy[c];
      dinp[n * C + c] += static_cast<float>(rstd[n] * (g - g_mean - xhat * gx_mean));
      dweight[c] += static_cast<float>(dy[c] * xhat);
      dbias[c] += dy[c];
    }
  }
}

}  // namespace flowlm::kernels::ref
