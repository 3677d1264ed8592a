#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rmsnorm.cuh"

namespace flowlm::kernels::cuda {

namespace {

// One block per row n; threads stride over the row's C channels.
__global__ void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp, const float* weight,
                                       index_t C, float eps, float offset) {
  __shared__ float shared[kWarpSize];
  const index_t n = blockIdx.x;
  const float* x = inp + n * C;
  float ss = 0.0f;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) ss += x[c] * x[c];
  const float r = 1.0f / sqrtf(block_sum(ss, shared) / static_cast<float>(C) + eps);
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) out[n * C + c] = x[c] * r * (weight[c] + offset);
  if (threadIdx.x == 0) rstd[n] = r;
}

// One block per row n: dinp from the row's mean of g * xhat.
__global__ void rmsnorm_backward_input_kernel(float* dinp, const float* dout, const float* inp,
                                              const float* weight, const float* rstd, index_t C,
                                              float offset) {
  __shared__ float shared[kWarpSize];
  const index_t n = blockIdx.x;
  const float* x = inp + n * C;
  const float* dy = dout + n * C;
  const float r = rstd[n];
  float gx_sum = 0.0f;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) gx_sum += (weight[c] + offset) * dy[c] * x[c] * r;
  const float gx_mean = block_sum(gx_sum, shared) / static_cast<float>(C);
  for (index_t c = threadIdx.x; c < C; c += blockDim.x)
    dinp[n * C + c] += r * ((weight[c] + offset) * dy[c] - x[c] * r * gx_mean);
}

// Blocks of 32 columns x kColumnRows rows (as layernorm's): dweight[c] += sum_n dout[n, c] * xhat[n, c].
__global__ void rmsnorm_backward_weight_kernel(float* dweight, const float* dout, const float* inp,
                                               const float* rstd, index_t N, index_t C) {
  __shared__ float shared[kColumnRows][kWarpSize];
  const index_t c = static_cast<index_t>(blockIdx.x) * kWarpSize + threadIdx.x;
  float dw = 0.0f;
  if (c < C) {
    for (index_t n = threadIdx.y; n < N; n += kColumnRows) dw += dout[n * C + c] * inp[n * C + c] * rstd[n];
  }
  dw = column_sum(dw, shared);
  if (threadIdx.y == 0 && c < C) dweight[c] += dw;
}

}  // namespace

void rmsnorm_forward(cudaStream_t stream, float* out, float* rstd, const float* inp, const float* weight,
                     index_t N, index_t C, float eps, bool plus_one) {
  if (N == 0) return;
  rmsnorm_forward_kernel<<<row_blocks(N), row_threads(C), 0, stream>>>(out, rstd, inp, weight, C, eps,
                                                                       plus_one ? 1.0f : 0.0f);
  FLOWLM_CUDA_CHECK_LAUNCH(rmsnorm_forward_kernel);
}

void rmsnorm_backward(cudaStream_t stream, float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, index_t N, index_t C, bool plus_one) {
  if (N == 0) return;
  rmsnorm_backward_input_kernel<<<row_blocks(N), row_threads(C), 0, stream>>>(dinp, dout, inp, weight, rstd,
                                                                              C, plus_one ? 1.0f : 0.0f);
  FLOWLM_CUDA_CHECK_LAUNCH(rmsnorm_backward_input_kernel);
  const dim3 block(kWarpSize, kColumnRows);
  rmsnorm_backward_weight_kernel<<<static_cast<unsigned>(ceil_div(C, kWarpSize)), block, 0, stream>>>(
      dweight, dout, inp, rstd, N, C);
  FLOWLM_CUDA_CHECK_LAUNCH(rmsnorm_backward_weight_kernel);
}

}  // namespace flowlm::kernels::cuda
