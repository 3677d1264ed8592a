// Host dense layers in both weight layouts (Conv1D [C,OC] and Linear [OC,C], which includes the
// tied LM head): every GEMM goes to OpenBLAS (row-major cblas_sgemm), called outside Kokkos
// parallel regions (OpenBLAS runs its own threads, matched to Kokkos's count).
#include <cblas.h>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::host_range;

namespace {
blasint bi(index_t x) { return static_cast<blasint>(x); }

// Rows of out start as bias so that the GEMM can add onto them (beta = 1); beta = 0 without bias.
float fill_bias(float* out, const float* bias, index_t N, index_t OC) {
  if (!bias) return 0.0f;
  Kokkos::parallel_for("flowlm::matmul_forward_bias", host_range(N), [=](const index_t n) {
    float* o = out + n * OC;
    for (index_t j = 0; j < OC; ++j) o[j] = bias[j];
  });
  return 1.0f;
}
}  // namespace

// out[N,OC] = inp[N,C] @ weight[C,OC] + bias.
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                    index_t C, index_t OC) {
  if (N <= 0 || OC <= 0) return;
  const float beta = fill_bias(out, bias, N, OC);
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
  if (dweight) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bi(C), bi(OC), bi(N), 1.0f, inp, bi(C), dout, bi(OC),
                1.0f, dweight, bi(OC));
  }
  if (dbias) host::column_sum_accumulate("flowlm::matmul_backward_bias", dbias, dout, N, OC);
}

// out[N,OC] = inp[N,C] @ weight[OC,C]^T + bias.
void linear_forward(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                    index_t C, index_t OC) {
  if (N <= 0 || OC <= 0) return;
  const float beta = fill_bias(out, bias, N, OC);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bi(N), bi(OC), bi(C), 1.0f, inp, bi(C), weight, bi(C),
              beta, out, bi(OC));
}

// dinp[N,C] += dout[N,OC] @ weight[OC,C];  dweight[OC,C] += dout^T @ inp;  dbias[OC] += sum_n dout[n,:].
void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                     const float* weight, index_t N, index_t C, index_t OC) {
  if (N <= 0 || OC <= 0 || C <= 0) return;
  if (dinp) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, bi(N), bi(C), bi(OC), 1.0f, dout, bi(OC), weight,
                bi(C), 1.0f, dinp, bi(C));
  }
  if (dweight) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, bi(OC), bi(C), bi(N), 1.0f, dout, bi(OC), inp, bi(C),
                1.0f, dweight, bi(C));
  }
  if (dbias) host::column_sum_accumulate("flowlm::linear_backward_bias", dbias, dout, N, OC);
}

}  // namespace flowlm::kernels
