// Reference GELU (tanh approximation), in double.
#include <cmath>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

namespace {
const double kGeluScale = 0.79788456080286535588;  // sqrt(2 / pi)
}

// out = 0.5 x (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3).
void gelu_forward(float* out, const float* inp, index_t N) {
  for (index_t i = 0; i < N; ++i) {
    const double x = inp[i];
    out[i] = static_cast<float>(0.5 * x * (1.0 + std::tanh(kGeluScale * (x + 0.044715 * x * x * x))));
  }
}

// d/dx = 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx, u = s (x + 0.044715 x^3).
void gelu_backward(float* dinp, const float* inp, const float* dout, index_t N) {
  for (index_t i = 0; i < N; ++i) {
    const double x = inp[i];
    const double th = std::tanh(kGeluScale * (x + 0.044715 * x * x * x));
    const double du = kGeluScale * (1.0 + 3.0 * 0.044715 * x * x);
    dinp[i] += static_cast<float>((0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * du) * dout[i]);
  }
}

}  // namespace flowlm::kernels::ref
