// Reference gated MLP activations (swiglu, geglu) on a packed [N, 2F] gate/up buffer, in double.
#include <cmath>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

namespace {
const double kGeluScale = 0.79788456080286535588;  // sqrt(2 / pi)

// act(x) and act'(x): silu(x) = x / (1 + exp(-x)); gelu_tanh(x) = 0.5 x (1 + tanh u), u = s (x + 0.044715
// x^3).
double act(double x, GluKind kind) {
  if (kind == GluKind::swiglu) return x / (1.0 + std::exp(-x));
  return 0.5 * x * (1.0 + std::tanh(kGeluScale * (x + 0.044715 * x * x * x)));
}
double act_grad(double x, GluKind kind) {
  if (kind == GluKind::swiglu) {
    const double s = 1.0 / (1.0 + std::exp(-x));
    return s * (1.0 + x * (1.0 - s));
  }
  const double th = std::tanh(kGeluScale * (x + 0.044715 * x * x * x));
  return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * kGeluScale * (1.0 + 3.0 * 0.044715 * x * x);
}
}  // namespace

// out[n, f] = act(inp[n, f]) * inp[n, F + f].
void glu_forward(float* out, const float* inp, index_t N, index_t F, GluKind kind) {
  for (index_t n = 0; n < N; ++n) {
    for (index_t f = 0; f < F; ++f) {
      const double g = inp[n * 2 * F + f], u = inp[n * 2 * F + F + f];
      out[n * F + f] = static_cast<float>(act(g, kind) * u);
    }
  }
}

// dgate += dout * up * act'(gate);  dup += dout * act(gate).
void glu_backward(float* dinp, const float* inp, const float* dout, index_t N, index_t F, GluKind kind) {
  for (index_t n = 0; n < N; ++n) {
    for (index_t f = 0; f < F; ++f) {
      const double g = inp[n * 2 * F + f], u = inp[n * 2 * F + F + f], dy = dout[n * F + f];
      dinp[n * 2 * F + f] += static_cast<float>(dy * u * act_grad(g, kind));
      dinp[n * 2 * F + F + f] += static_cast<float>(dy * act(g, kind));
    }
  }
}

}  // namespace flowlm::kernels::ref
