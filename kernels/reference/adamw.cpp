// Reference AdamW step and the vector reductions used for gradient clipping and NaN checks.
#include <cmath>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

void adamw_update(float* param, float* m, float* v, const float* grad, index_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float grad_scale, long step) {
  const double bc1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  for (index_t i = 0; i < n; ++i) {
    const float g = grad[i] * grad_scale;
    m[i] = beta1 * m[i] + (1.0f - beta1) * g;
    v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
    const double mhat = m[i] / bc1, vhat = v[i] / bc2;
    param[i] -= static_cast<float>(lr * (mhat / (std::sqrt(vhat) + eps) + weight_decay * param[i]));
  }
}

double sum_squares(const float* x, index_t n) {
  double s = 0.0;
  for (index_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

void scale(float* x, float s, index_t n) {
  for (index_t i = 0; i < n; ++i) x[i] *= s;
}

bool all_finite(const float* x, index_t n) {
  for (index_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

}  // namespace flowlm::kernels::ref
