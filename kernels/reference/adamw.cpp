// Reference AdamW step, bias corrections in double.
#include <cmath>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

// m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr (m / bc1 / (sqrt(v / bc2) + eps) + wd p).
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

}  // namespace flowlm::kernels::ref
