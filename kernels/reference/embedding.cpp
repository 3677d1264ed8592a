// Reference token (+ position) embedding: plain loops, the ground truth for the parity tests.
#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

// out[b,t,:] = scale * wte[tokens[b,t],:] + wpe[t,:] (no wpe term when wpe is null).
void embedding_forward(float* out, const std::int32_t* tokens, const float* wte, const float* wpe, index_t B,
                       index_t T, index_t C, float scale) {
  for (index_t b = 0; b < B; ++b) {
    for (index_t t = 0; t < T; ++t) {
      const index_t tok = tokens[b * T + t];
      for (index_t c = 0; c < C; ++c) {
        const float pos = wpe ? wpe[t * C + c] : 0.0f;
        out[(b * T + t) * C + c] = scale * wte[tok * C + c] + pos;
      }
    }
  }
}

// dwte[tokens[b,t],:] += scale * dout[b,t,:];  dwpe[t,:] += dout[b,t,:].
void embedding_backward(float* dwte, float* dwpe, const float* dout, const std::int32_t* tokens, index_t B,
                        index_t T, index_t C, float scale) {
  for (index_t b = 0; b < B; ++b) {
    for (index_t t = 0; t < T; ++t) {
      const index_t tok = tokens[b * T + t];
      for (index_t c = 0; c < C; ++c) {
        dwte[tok * C + c] += scale * dout[(b * T + t) * C + c];
        if (dwpe) dwpe[t * C + c] += dout[(b * T + t) * C + c];
      }
    }
  }
}

}  // namespace flowlm::kernels::ref
