// Reference logit soft-capping, in double.
#include <cmath>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

// out = cap * tanh(x / cap).
void softcap_forward(float* out, const float* inp, index_t N, float cap) {
  for (index_t i = 0; i < N; ++i)
    out[i] = static_cast<float>(cap * std::tanh(static_cast<double>(inp[i]) / cap));
}

// dinp += dout * (1 - (out / cap)^2).
void softcap_backward(float* dinp, const float* out, const float* dout, index_t N, float cap) {
  for (index_t i = 0; i < N; ++i) {
    const double th = static_cast<double>(out[i]) / cap;
    dinp[i] += static_cast<float>(dout[i] * (1.0 - th * th));
  }
}

}  // namespace flowlm::kernels::ref
