// Host dense layers in both weight layouts (Conv1D [C,OC] and Linear [OC,C], which includes the
// tied LM head): every GEMM goes to OpenBLAS (row-major cblas_sgemm), called outside Kokkos
// parallel regions (OpenBLAS runs its own threads, matched to Kokkos's count), except forwards of
// at most kSmallRows rows (decoding steps), which read the weight once in a loop of their own.
#include <cblas.h>

#include <algorithm>

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
// A GEMM of a few rows (a decoding step: one row per sequence) is memory-bound on the weight, which
// BLAS would first copy into its packed layout on every call: read it once instead, a block of
// outputs per work item, all rows at a time.
constexpr index_t kSmallRows = 16;
constexpr index_t kSmallBlock = 64;  // output columns per work item

// out[n, j] = bias[j] + sum_c inp[n, c] weight[c, j] (Conv1D [C, OC]): per block of j, a pass over c
// updates every row's block (kSmallRows x kSmallBlock floats stay in L1).
void small_rows_conv1d(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                       index_t C, index_t OC) {
  const index_t blocks = (OC + kSmallBlock - 1) / kSmallBlock;
  Kokkos::parallel_for("flowlm::matmul_forward_small", host_range(blocks), [=](const index_t k) {
    const index_t j0 = k * kSmallBlock, j1 = std::min(OC, j0 + kSmallBlock), w = j1 - j0;
    float acc[kSmallRows][kSmallBlock];
    for (index_t n = 0; n < N; ++n)
      for (index_t j = 0; j < w; ++j) acc[n][j] = bias ? bias[j0 + j] : 0.0f;
    for (index_t c = 0; c < C; ++c) {
      const float* wr = weight + c * OC + j0;
      for (index_t n = 0; n < N; ++n) {
        const float a = inp[n * C + c];
        float* r = acc[n];
#pragma omp simd
        for (index_t j = 0; j < w; ++j) r[j] += a * wr[j];
      }
    }
    for (index_t n = 0; n < N; ++n)
      for (index_t j = 0; j < w; ++j) out[n * OC + j0 + j] = acc[n][j];
  });
}

// out[n, o] = bias[o] + weight[o, :] . inp[n, :] (Linear [OC, C]): each weight row is read once for
// every row's dot product.
void small_rows_linear(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                       index_t C, index_t OC) {
  const index_t blocks = (OC + kSmallBlock - 1) / kSmallBlock;
  Kokkos::parallel_for("flowlm::linear_forward_small", host_range(blocks), [=](const index_t k) {
    const index_t o1 = std::min(OC, (k + 1) * kSmallBlock);
    for (index_t o = k * kSmallBlock; o < o1; ++o) {
      const float* wr = weight + o * C;
      for (index_t n = 0; n < N; ++n) {
        const float* x = inp + n * C;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (index_t c = 0; c < C; ++c) s += x[c] * wr[c];
        out[n * OC + o] = (bias ? bias[o] : 0.0f) + s;
      }
    }
  });
}
}  // namespace

// out[N,OC] = inp[N,C] @ weight[C,OC] + bias.
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                    index_t C, index_t OC) {
  if (N <= 0 || OC <= 0) return;
  if (N <= kSmallRows) return small_rows_conv1d(out, inp, weight, bias, N, C, OC);
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
  if (N <= kSmallRows) return small_rows_linear(out, inp, weight, bias, N, C, OC);
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
