// Host dense layers in both weight layouts (Conv1D [C,OC] and Linear [OC,C], which includes the
// tied LM head): every GEMM goes to OpenBLAS (row-major cblas_sgemm), called outside Kokkos
// parallel regions (OpenBLAS runs its own threads, matched to Kokkos's count), except Linear forwards
// of at most kSmallRows rows (decoding steps), which read the weight once in a loop of their own.
#include <cblas.h>

#include <algorithm>
#include <vector>

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
// A GEMM of a few rows (a decoding step: one row per sequence) against a Linear [OC, C] weight is
// memory-bound on the weight, which OpenBLAS would first copy into its packed layout on every call
// (measured: half of a decoding step). Read it once instead: 2 weight rows x up to 8 input rows per
// pass over C, 16 vector accumulators. (Conv1D [C, OC] weights go to BLAS, which is faster there.)
constexpr index_t kSmallRows = 16;
constexpr index_t kSmallBlock = 64;  // output columns per work item

// out[n][i] = x[n] . w[i] for R <= 8 input rows and 2 weight rows: 16 vector accumulators, so that a
// decoding step of up to 8 sequences reads each weight row once.
template <int R>
void dot_block(const float* const* x, const float* const* w, index_t C, float (*out)[2]) {
  float s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
  float s40 = 0, s41 = 0, s50 = 0, s51 = 0, s60 = 0, s61 = 0, s70 = 0, s71 = 0;
  auto row = [&](int n) { return x[n < R ? n : 0]; };
  const float *x0 = row(0), *x1 = row(1), *x2 = row(2), *x3 = row(3), *x4 = row(4), *x5 = row(5),
              *x6 = row(6), *x7 = row(7);
  const float *w0 = w[0], *w1 = w[1];
#pragma omp simd reduction(+ : s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51, s60, s61, s70, s71)
  for (index_t c = 0; c < C; ++c) {
    const float a = w0[c], b = w1[c];
    s00 += x0[c] * a, s01 += x0[c] * b;
    if (R > 1) s10 += x1[c] * a, s11 += x1[c] * b;
    if (R > 2) s20 += x2[c] * a, s21 += x2[c] * b;
    if (R > 3) s30 += x3[c] * a, s31 += x3[c] * b;
    if (R > 4) s40 += x4[c] * a, s41 += x4[c] * b;
    if (R > 5) s50 += x5[c] * a, s51 += x5[c] * b;
    if (R > 6) s60 += x6[c] * a, s61 += x6[c] * b;
    if (R > 7) s70 += x7[c] * a, s71 += x7[c] * b;
  }
  const float all[8][2] = {{s00, s01}, {s10, s11}, {s20, s21}, {s30, s31},
                           {s40, s41}, {s50, s51}, {s60, s61}, {s70, s71}};
  for (int n = 0; n < R; ++n) out[n][0] = all[n][0], out[n][1] = all[n][1];
}

// out[n][j] = sum_c x[n][c] w[c][j] for R <= 8 rows and 32 columns of a Conv1D weight (row stride OC):
// 16 vector accumulators, each weight row slice read once.
template <int R>
void axpy_block(const float* const* x, const float* w, index_t C, index_t OC, float (*out)[32]) {
  float acc[R][32] = {};
  for (index_t c = 0; c < C; ++c) {
    const float* wr = w + c * OC;
    for (int n = 0; n < R; ++n) {
      const float a = x[n][c];
#pragma omp simd
      for (int j = 0; j < 32; ++j) acc[n][j] += a * wr[j];
    }
  }
  for (int n = 0; n < R; ++n)
    for (int j = 0; j < 32; ++j) out[n][j] = acc[n][j];
}

using AxpyBlock = void (*)(const float* const*, const float*, index_t, index_t, float (*)[32]);
constexpr AxpyBlock kAxpyBlocks[8] = {axpy_block<1>, axpy_block<2>, axpy_block<3>, axpy_block<4>,
                                      axpy_block<5>, axpy_block<6>, axpy_block<7>, axpy_block<8>};

// out[n, j] = bias[j] + inp[n, :] . weight[:, j] (Conv1D [C, OC]); a last partial block of columns
// goes through a copy of its slice.
void small_rows_conv1d(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                       index_t C, index_t OC) {
  const index_t blocks = (OC + 31) / 32;
  Kokkos::parallel_for("flowlm::matmul_forward_small", host_range(blocks), [=](const index_t k) {
    const index_t j0 = k * 32, nj = std::min<index_t>(32, OC - j0);
    std::vector<float> tail;
    const float* w = weight + j0;
    index_t stride = OC;
    if (nj < 32) {  // pad the slice to 32 columns
      tail.assign(static_cast<std::size_t>(C * 32), 0.0f);
      for (index_t c = 0; c < C; ++c)
        for (index_t j = 0; j < nj; ++j) tail[static_cast<std::size_t>(c * 32 + j)] = weight[c * OC + j0 + j];
      w = tail.data();
      stride = 32;
    }
    for (index_t n = 0; n < N; n += 8) {
      const index_t nr = std::min<index_t>(8, N - n);
      const float* x[8];
      for (index_t r = 0; r < nr; ++r) x[r] = inp + (n + r) * C;
      float r32[8][32];
      kAxpyBlocks[nr - 1](x, w, C, stride, r32);
      for (index_t r = 0; r < nr; ++r)
        for (index_t j = 0; j < nj; ++j)
          out[(n + r) * OC + j0 + j] = (bias ? bias[j0 + j] : 0.0f) + r32[r][j];
    }
  });
}

using DotBlock = void (*)(const float* const*, const float* const*, index_t, float (*)[2]);
constexpr DotBlock kDotBlocks[8] = {dot_block<1>, dot_block<2>, dot_block<3>, dot_block<4>,
                                    dot_block<5>, dot_block<6>, dot_block<7>, dot_block<8>};

// out[n, o] = bias[o] + weight[o, :] . inp[n, :] (Linear [OC, C]).
void small_rows_linear(float* out, const float* inp, const float* weight, const float* bias, index_t N,
                       index_t C, index_t OC) {
  const index_t blocks = (OC + kSmallBlock - 1) / kSmallBlock;
  Kokkos::parallel_for("flowlm::linear_forward_small", host_range(blocks), [=](const index_t k) {
    const index_t o1 = std::min(OC, (k + 1) * kSmallBlock);
    for (index_t o = k * kSmallBlock; o < o1; o += 2) {
      const index_t no = std::min<index_t>(2, o1 - o);
      const float* w[2] = {weight + o * C, weight + (o + no - 1) * C};  // a lone last row pairs with itself
      for (index_t n = 0; n < N; n += 8) {
        const index_t nr = std::min<index_t>(8, N - n);
        const float* x[8];
        for (index_t j = 0; j < nr; ++j) x[j] = inp + (n + j) * C;
        float r[8][2];
        kDotBlocks[nr - 1](x, w, C, r);
        for (index_t j = 0; j < nr; ++j)
          for (index_t i = 0; i < no; ++i) out[(n + j) * OC + o + i] = (bias ? bias[o + i] : 0.0f) + r[j][i];
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
