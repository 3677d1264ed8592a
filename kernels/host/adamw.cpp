// Host AdamW step and vector reductions. Reductions sum fixed blocks into a vector of partials that
// is then added in order, so results do not depend on the thread count.
#include <cmath>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::for_blocks;
using host::host_range;
using host::kBlock;

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

double sum_squares(const float* x, index_t n) {
  const index_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<std::size_t>(nb));
  double* part = partial.data();
  for_blocks("flowlm::sum_squares", n, [=](index_t i0, index_t i1) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (index_t i = i0; i < i1; ++i) s += static_cast<double>(x[i]) * x[i];
    part[i0 / kBlock] = s;
  });
  double total = 0.0;
  for (const double s : partial) total += s;
  return total;
}

void scale(float* x, float s, index_t n) {
  for_blocks("flowlm::scale", n, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) x[i] *= s;
  });
}

// Inf and NaN are exactly the floats whose exponent bits are all ones.
bool all_finite(const float* x, index_t n) {
  const index_t nb = (n + kBlock - 1) / kBlock;
  index_t bad = 0;
  Kokkos::parallel_reduce(
      "flowlm::all_finite", host_range(nb),
      [=](const index_t k, index_t& count) {
        const index_t i1 = std::min(n, (k + 1) * kBlock);
        index_t c = 0;
        for (index_t i = k * kBlock; i < i1; ++i) {
          std::uint32_t bits;
          std::memcpy(&bits, x + i, sizeof(bits));
          c += (bits & 0x7f800000u) == 0x7f800000u;
        }
        count += c;
      },
      bad);
  return bad == 0;
}

}  // namespace flowlm::kernels
