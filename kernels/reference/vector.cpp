// Reference vector ops: sum of squares (gradient norm), dot (weighted losses), scale,
// finiteness (NaN checks), axpby.
#include <cmath>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

double sum_squares(const float* x, index_t n) {
  double s = 0.0;
  for (index_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

double dot(const float* x, const float* y, index_t n) {
  double s = 0.0;
  for (index_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * y[i];
  return s;
}

void scale(float* x, float s, index_t n) {
  for (index_t i = 0; i < n; ++i) x[i] *= s;
}

void sign(float* out, const float* x, index_t n) {
  for (index_t i = 0; i < n; ++i) out[i] = static_cast<float>((x[i] > 0.0f) - (x[i] < 0.0f));
}

bool all_finite(const float* x, index_t n) {
  for (index_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

// y = a x + b y (y not read when b == 0).
void axpby(float* y, const float* x, index_t n, float a, float b) {
  for (index_t i = 0; i < n; ++i) y[i] = b == 0.0f ? a * x[i] : a * x[i] + b * y[i];
}

}  // namespace flowlm::kernels::ref
