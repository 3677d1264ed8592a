// Reference token + position embedding: plain loops, the ground truth for the parity tests.
#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

void encoder_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe, index_t B,
                     index_t T, index_t C) {
  for (index_t b = 0; b < B; ++b) {
    for (index_t t = 0; t < T; ++t) {
      const index_t tok = tokens[b * T + t];
      for (index_t c = 0; c < C; ++c) out[(b * T + t) * C + c] = wte[tok * C + c] + wpe[t * C + c];
    }
  }
}

void encoder_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens, index_t B,
                      index_t T, index_t C) {
  for (index_t b = 0; b < B; ++b) {
    for (index_t t = 0; t < T; ++t) {
      const index_t tok = tokens[b * T + t];
      for (index_t c = 0; c < C; ++c) {
        dwte[tok * C + c] += dout[(b * T + t) * C + c];
        dwpe[t * C + c] += dout[(b * T + t) * C + c];
      }
    }
  }
}

}  // namespace flowlm::kernels::ref
