// cuBLAS is column-major: a row-major [R, K] array is, to it, the column-major K x R matrix (its
// transpose) with leading dimension K. So every row-major product Y = X @ W is computed as
// Y^T = W^T @ X^T, and each call below names the column-major shapes.
#include <climits>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/matmul.cuh"

namespace flowlm::kernels::cuda {

namespace {

// One thread per element (n, o) of out [N, OC]: out = bias[o], before a GEMM with beta = 1 adds X @ W.
__global__ void bias_broadcast_kernel(float* out, const float* bias, index_t N, index_t OC) {
  for (index_t i = grid_index(); i < N * OC; i += grid_stride()) out[i] = bias[i % OC];
}

// Blocks of 32 columns x kColumnRows rows: dbias[o] += sum_n dout[n, o], in a fixed order.
__global__ void bias_backward_kernel(float* dbias, const float* dout, index_t N, index_t OC) {
  __shared__ float shared[kColumnRows][kWarpSize];
  const index_t o = static_cast<index_t>(blockIdx.x) * kWarpSize + threadIdx.x;
  float s = 0.0f;
  if (o < OC) {
    for (index_t n = threadIdx.y; n < N; n += kColumnRows) s += dout[n * OC + o];
  }
  s = column_sum(s, shared);
  if (threadIdx.y == 0 && o < OC) dbias[o] += s;
}

int blas_int(index_t v, const char* what) {
  if (v > INT_MAX) fail<Error>("cuda: matmul: {} = {} exceeds cuBLAS's int range", what, v);
  return static_cast<int>(v);
}

// C (m x n) = op(A) (m x k) @ op(B) (k x n) + beta C, column-major, fp32 inputs, outputs and compute.
// CUBLAS_COMPUTE_32F keeps TF32 off, so results match the fp32 reference closely.
void gemm(cublasHandle_t blas, bool trans_a, bool trans_b, int m, int n, int k, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  const float alpha = 1.0f;
  FLOWLM_CUBLAS_CHECK(cublasGemmEx(blas, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, A, CUDA_R_32F, lda,
                                   B, CUDA_R_32F, ldb, &beta, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
}

}  // namespace

void matmul_forward(cublasHandle_t blas, cudaStream_t stream, float* out, const float* inp,
                    const float* weight, const float* bias, index_t N, index_t C, index_t OC,
                    WeightLayout layout) {
  if (N == 0 || OC == 0) return;
  const int n = blas_int(N, "N"), c = blas_int(C, "C"), oc = blas_int(OC, "OC");
  if (bias) {
    bias_broadcast_kernel<<<elementwise_blocks(N * OC), kElementwiseThreads, 0, stream>>>(out, bias, N, OC);
    FLOWLM_CUDA_CHECK_LAUNCH(bias_broadcast_kernel);
  }
  // out^T (OC x N) = W^T (OC x C) @ inp^T (C x N). conv1d: weight [C, OC] row-major is W^T with ld OC;
  // linear: weight [OC, C] row-major is W (C x OC) with ld C, transposed by cuBLAS.
  if (layout == WeightLayout::conv1d)
    gemm(blas, false, false, oc, n, c, weight, oc, inp, c, bias ? 1.0f : 0.0f, out, oc);
  else
    gemm(blas, true, false, oc, n, c, weight, c, inp, c, bias ? 1.0f : 0.0f, out, oc);
}

void matmul_backward(cublasHandle_t blas, cudaStream_t stream, float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, const float* weight, index_t N, index_t C,
                     index_t OC, WeightLayout layout) {
  if (N == 0 || OC == 0) return;
  const int n = blas_int(N, "N"), c = blas_int(C, "C"), oc = blas_int(OC, "OC");
  const bool conv1d = layout == WeightLayout::conv1d;
  if (dinp) {
    // dinp^T (C x N) += W (C x OC) @ dout^T (OC x N); W is weight transposed (conv1d) or as stored (linear).
    if (conv1d)
      gemm(blas, true, false, c, n, oc, weight, oc, dout, oc, 1.0f, dinp, c);
    else
      gemm(blas, false, false, c, n, oc, weight, c, dout, oc, 1.0f, dinp, c);
  }
  if (dweight) {
    // conv1d: dweight [C, OC] row-major is dW^T (OC x C) += dout^T (OC x N) @ inp (N x C).
    // linear: dweight [OC, C] row-major is dW (C x OC) += inp^T (C x N) @ dout (N x OC).
    if (conv1d)
      gemm(blas, false, true, oc, c, n, dout, oc, inp, c, 1.0f, dweight, oc);
    else
      gemm(blas, false, true, c, oc, n, inp, c, dout, oc, 1.0f, dweight, c);
  }
  if (dbias) {
    const dim3 block(kWarpSize, kColumnRows);
    bias_backward_kernel<<<static_cast<unsigned>(ceil_div(OC, kWarpSize)), block, 0, stream>>>(dbias, dout, N,
                                                                                               OC);
    FLOWLM_CUDA_CHECK_LAUNCH(bias_backward_kernel);
  }
}

}  // namespace flowlm::kernels::cuda
