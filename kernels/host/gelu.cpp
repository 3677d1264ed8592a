// Host GELU (tanh approximation), element-wise over blocks.
#include "kernels/host/activation.hpp"
#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::for_blocks;

// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), computed as x * sigmoid(2u) (host::gelu_tanh).
void gelu_forward(float* out, const float* inp, index_t N) {
  for_blocks("flowlm::gelu_forward", N, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) out[i] = host::gelu_tanh(inp[i]);
  });
}

// dinp += gelu'(x) * dout (host::gelu_tanh_grad).
void gelu_backward(float* dinp, const float* inp, const float* dout, index_t N) {
  for_blocks("flowlm::gelu_backward", N, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) dinp[i] += host::gelu_tanh_grad(inp[i]) * dout[i];
  });
}

}  // namespace flowlm::kernels
