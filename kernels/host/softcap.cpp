// Host logit soft-capping (Gemma-2's final logits), element-wise over blocks.
#include <cmath>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::for_blocks;

// out = cap * tanh(x / cap); out may alias inp (each element is read before it is written).
void softcap_forward(float* out, const float* inp, index_t N, float cap) {
  const float inv = 1.0f / cap;
  for_blocks("flowlm::softcap_forward", N, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) out[i] = cap * std::tanh(inp[i] * inv);
  });
}

// d/dx cap tanh(x / cap) = 1 - tanh^2 = 1 - (out / cap)^2:  dinp += dout * (1 - (out / cap)^2).
void softcap_backward(float* dinp, const float* out, const float* dout, index_t N, float cap) {
  const float inv = 1.0f / cap;
  for_blocks("flowlm::softcap_backward", N, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      const float th = out[i] * inv;
      dinp[i] += dout[i] * (1.0f - th * th);
    }
  });
}

}  // namespace flowlm::kernels
