// Reference dense layers, Conv1D weight [C,OC] and Linear weight [OC,C] (which includes the tied
// LM head), dot products in double.
#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

namespace {
// One implementation for both layouts: element (c, o) of W = inp-dim x out-dim lives at
// weight[c * sc + o * so], with (sc, so) = (OC, 1) for Conv1D and (1, C) for Linear.
void dense_forward(float* out, const float* inp, const float* weight, const float* bias, index_t N, index_t C,
                   index_t OC, index_t sc, index_t so) {
  for (index_t n = 0; n < N; ++n) {
    for (index_t o = 0; o < OC; ++o) {
      double s = bias ? bias[o] : 0.0;
      for (index_t c = 0; c < C; ++c) s += static_cast<double>(inp[n * C + c]) * weight[c * sc + o * so];
      out[n * OC + o] = static_cast<float>(s);
    }
  }
}

// dinp += dout @ W^T, dW += inp^T @ dout, dbias += sum_n dout[n].
void dense_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                    const float* weight, index_t N, index_t C, index_t OC, index_t sc, index_t so) {
  if (dinp) {
    for (index_t n = 0; n < N; ++n) {
      for (index_t c = 0; c < C; ++c) {
        double s = 0.0;
        for (index_t o = 0; o < OC; ++o) s += static_cast<double>(dout[n * OC + o]) * weight[c * sc + o * so];
        dinp[n * C + c] += static_cast<float>(s);
      }
    }
  }
  if (dweight) {
    for (index_t c = 0; c < C; ++c) {
      for (index_t o = 0; o < OC; ++o) {
        double s = 0.0;
        for (index_t n = 0; n < N; ++n) s += static_cast<double>(inp[n * C + c]) * dout[n * OC + o];
        dweight[c * sc + o * so] += static_cast<float>(s);
      }
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
}  // namespace

void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                    index_t C, index_t OC) {
  dense_forward(out, inp, weight, bias, N, C, OC, OC, 1);
}

void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, index_t N, index_t C, index_t OC) {
  dense_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC, OC, 1);
}

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                    index_t C, index_t OC) {
  dense_forward(out, inp, weight, bias, N, C, OC, 1, C);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, index_t N, index_t C, index_t OC) {
  dense_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC, 1, C);
}

}  // namespace flowlm::kernels::ref
