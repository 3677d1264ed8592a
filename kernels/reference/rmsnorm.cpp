// Reference RMSNorm (weight or 1 + weight), statistics in double.
#include <cmath>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

// rstd = 1 / sqrt(sum x^2 / C + eps);  out = x * rstd * (weight + [plus_one]).
void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, index_t N, index_t C,
                     float eps, bool plus_one) {
  const double offset = plus_one ? 1.0 : 0.0;
  for (index_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    double ss = 0.0;
    for (index_t c = 0; c < C; ++c) ss += static_cast<double>(x[c]) * x[c];
    const double r = 1.0 / std::sqrt(ss / static_cast<double>(C) + static_cast<double>(eps));
    for (index_t c = 0; c < C; ++c) out[n * C + c] = static_cast<float>(x[c] * r * (weight[c] + offset));
    rstd[n] = static_cast<float>(r);
  }
}

// With xhat = x * rstd and g = (weight + offset) * dout:
// dx = rstd * (g - xhat * mean(g * xhat)), dweight += dout * xhat.
void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, const float* weight,
                      const float* rstd, index_t N, index_t C, bool plus_one) {
  const double offset = plus_one ? 1.0 : 0.0;
  for (index_t n = 0; n < N; ++n) {
    const float* x = inp + n * C;
    const float* dy = dout + n * C;
    const double r = rstd[n];
    double gx_mean = 0.0;
    for (index_t c = 0; c < C; ++c) gx_mean += (weight[c] + offset) * dy[c] * x[c] * r;
    gx_mean /= static_cast<double>(C);
    for (index_t c = 0; c < C; ++c) {
      const double xhat = x[c] * r;
      dinp[n * C + c] += static_cast<float>(r * ((weight[c] + offset) * dy[c] - xhat * gx_mean));
      dweight[c] += static_cast<float>(dy[c] * xhat);
    }
  }
}

}  // namespace flowlm::kernels::ref
