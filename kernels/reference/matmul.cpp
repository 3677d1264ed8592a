// Reference dense layer (weight [C,OC]) and tied LM head (wte [V,C]), dot products in double.
#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                    index_t C, index_t OC) {
  for (index_t n = 0; n < N; ++n) {
    for (index_t o = 0; o < OC; ++o) {
      double s = bias ? bias[o] : 0.0;
      for (index_t c = 0; c < C; ++c) s += static_cast<double>(inp[n * C + c]) * weight[c * OC + o];
      out[n * OC + o] = static_cast<float>(s);
    }
  }
}

// dinp += dout @ weight^T, dweight += inp^T @ dout, dbias += sum_n dout[n].
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, index_t N, index_t C, index_t OC) {
  if (dinp) {
    for (index_t n = 0; n < N; ++n) {
      for (index_t c = 0; c < C; ++c) {
        double s = 0.0;
        for (index_t o = 0; o < OC; ++o) s += static_cast<double>(dout[n * OC + o]) * weight[c * OC + o];
        dinp[n * C + c] += static_cast<float>(s);
      }
    }
  }
  for (index_t c = 0; c < C; ++c) {
    for (index_t o = 0; o < OC; ++o) {
      double s = 0.0;
      for (index_t n = 0; n < N; ++n) s += static_cast<double>(inp[n * C + c]) * dout[n * OC + o];
      dweight[c * OC + o] += static_cast<float>(s);
    }
  }
  if (dbias) {
    for (index_t o = 0; o < OC; ++o) {
      double s = 0.0;
      for (index_t n = 0; n < N; ++n) s += dout[n * OC + o];
      dbias[o] += static_cast<float>(s);
    }
  }
}

void lm_head_forward(float* logits, const float* inp, const float* wte, index_t N, index_t C, index_t V) {
  for (index_t n = 0; n < N; ++n) {
    for (index_t v = 0; v < V; ++v) {
      double s = 0.0;
      for (index_t c = 0; c < C; ++c) s += static_cast<double>(inp[n * C + c]) * wte[v * C + c];
      logits[n * V + v] = static_cast<float>(s);
    }
  }
}

// dinp += dlogits @ wte, dwte += dlogits^T @ inp.
void lm_head_backward(float* dinp, float* dwte, const float* dlogits, const float* inp, const float* wte,
                      index_t N, index_t C, index_t V) {
  if (dinp) {
    for (index_t n = 0; n < N; ++n) {
      for (index_t c = 0; c < C; ++c) {
        double s = 0.0;
        for (index_t v = 0; v < V; ++v) s += static_cast<double>(dlogits[n * V + v]) * wte[v * C + c];
        dinp[n * C + c] += static_cast<float>(s);
      }
    }
  }
  for (index_t v = 0; v < V; ++v) {
    for (index_t c = 0; c < C; ++c) {
      double s = 0.0;
      for (index_t n = 0; n < N; ++n) s += static_cast<double>(dlogits[n * V + v]) * inp[n * C + c];
      dwte[v * C + c] += static_cast<float>(s);
    }
  }
}

}  // namespace flowlm::kernels::ref
