// Host dense layer and tied LM head: every GEMM goes to OpenBLAS (row-major cblas_sgemm), called
// outside Kokkos parallel regions (OpenBLAS runs its own threads, matched to Kokkos's count).
#include <cblas.h>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::host_range;

namespace {
blasint bi(index_t x) { return static_cast<blasint>(x); }
}  // namespace

// out[N,OC] = inp[N,C] @ weight[C,OC] + bias: rows start as bias, then the GEMM adds (beta = 1).
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                    index_t C, index_t OC) {
  if (N <= 0 || OC <= 0) return;
  float beta = 0.0f;
  if (bias) {
    Kokkos::parallel_for("flowlm::matmul_forward_bias", host_range(N), [=](const index_t n) {
      float* o = out + n * OC;
      for (index_t j = 0; j < OC; ++j) o[j] = bias[j];
    });
    beta = 1.0f;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi(N), bi(OC), bi(C), 1.0f, inp, bi(C), weight,
              bi(OC), beta, out, bi(OC));
}

// dinp[N,C] += dout[N,OC] @ weight^T;  dweight[C,OC] += inp^T @ dout;  dbias[OC] += sum_n dout[n,:].
void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, index_t N, index_t C, index_t OC) {
  if (N <= 0 || OC <= 0 || C <= 0) return;
  if (dinp) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi(N), bi(C), bi(OC), 1.0f, dout, bi(OC), weight,
                bi(OC), 1.0f, dinp, bi(C));
  }
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bi(C), bi(OC), bi(N), 1.0f, inp, bi(C), dout, bi(OC),
              1.0f, dweight, bi(OC));
  if (dbias) host::column_sum_accumulate("flowlm::matmul_backward_bias", dbias, dout, N, OC);
}

// logits[N,V] = inp[N,C] @ wte[V,C]^T.
void lm_head_forward(float* logits, const float* inp, const float* wte, index_t N, index_t C, index_t V) {
  if (N <= 0 || V <= 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi(N), bi(V), bi(C), 1.0f, inp, bi(C), wte, bi(C),
              0.0f, logits, bi(V));
}

// dinp[N,C] += dlogits[N,V] @ wte[V,C];  dwte[V,C] += dlogits^T @ inp.
void lm_head_backward(float* dinp, float* dwte, const float* dlogits, const float* inp, const float* wte,
                      index_t N, index_t C, index_t V) {
  if (N <= 0 || V <= 0 || C <= 0) return;
  if (dinp) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi(N), bi(C), bi(V), 1.0f, dlogits, bi(V), wte,
                bi(C), 1.0f, dinp, bi(C));
  }
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bi(V), bi(C), bi(N), 1.0f, dlogits, bi(V), inp, bi(C),
              1.0f, dwte, bi(C));
}

}  // namespace flowlm::kernels
