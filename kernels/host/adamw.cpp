// Host AdamW step, element-wise over blocks.
#include <cmath>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::for_blocks;

// m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr (m / bc1 / (sqrt(v / bc2) + eps) + wd p), g = grad *
// scale.
void adamw_update(float* param, float* m, float* v, const float* grad, index_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, float grad_scale, long step) {
  const float inv_bc1 =
      static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step))));
  const float inv_bc2 =
      static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step))));
  for_blocks("flowlm::adamw_update", n, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      const float g = grad[i] * grad_scale;
      const float mi = beta1 * m[i] + (1.0f - beta1) * g;
      const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
      m[i] = mi;
      v[i] = vi;
      param[i] -= lr * (mi * inv_bc1 / (std::sqrt(vi * inv_bc2) + eps) + weight_decay * param[i]);
    }
  });
}

}  // namespace flowlm::kernels
