#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/layernorm.cuh"

namespace flowlm::kernels::cuda {

namespace {

// One block per row n; threads stride over the row's C channels. Two passes (mean, then the
// centred variance) as the reference does.
__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* inp,
                                         const float* weight, const float* bias, index_t C, float eps) {
  __shared__ float shared[kWarpSize];
  const index_t n = blockIdx.x;
  const float* x = inp + n * C;
  float s = 0.0f;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) s += x[c];
  const float m = block_sum(s, shared) / static_cast<float>(C);
  float v = 0.0f;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) v += (x[c] - m) * (x[c] - m);
  const float var = block_sum(v, shared) / static_cast<float>(C);
  const float r = 1.0f / sqrtf(var + eps);
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) out[n * C + c] = (x[c] - m) * r * weight[c] + bias[c];
  if (threadIdx.x == 0) {
    mean[n] = m;
    rstd[n] = r;
  }
}

// One block per row n: dinp from the row's two means of g = weight * dout.
__global__ void layernorm_backward_input_kernel(float* dinp, const float* dout, const float* inp,
                                                const float* weight, const float* mean, const float* rstd,
                                                index_t C) {
  __shared__ float shared[kWarpSize];
  const index_t n = blockIdx.x;
  const float* x = inp + n * C;
  const float* dy = dout + n * C;
  const float m = mean[n], r = rstd[n];
  float g_sum = 0.0f, gx_sum = 0.0f;
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float g = weight[c] * dy[c];
    g_sum += g;
    gx_sum += g * (x[c] - m) * r;
  }
  const float g_mean = block_sum(g_sum, shared) / static_cast<float>(C);
  const float gx_mean = block_sum(gx_sum, shared) / static_cast<float>(C);
  for (index_t c = threadIdx.x; c < C; c += blockDim.x) {
    const float xhat = (x[c] - m) * r;
    dinp[n * C + c] += r * (weight[c] * dy[c] - g_mean - xhat * gx_mean);
  }
}

// Blocks of 32 columns x kColumnRows rows: thread (x, y) sums column c = 32 blockIdx.x + x over rows
// y, y + kColumnRows, ...; column_sum adds the partials in a fixed order.
__global__ void layernorm_backward_params_kernel(float* dweight, float* dbias, const float* dout,
                                                 const float* inp, const float* mean, const float* rstd,
                                                 index_t N, index_t C) {
  __shared__ float shared[kColumnRows][kWarpSize];
  const index_t c = static_cast<index_t>(blockIdx.x) * kWarpSize + threadIdx.x;
  float dw = 0.0f, db = 0.0f;
  if (c < C) {
    for (index_t n = threadIdx.y; n < N; n += kColumnRows) {
      const float dy = dout[n * C + c];
      dw += dy * (inp[n * C + c] - mean[n]) * rstd[n];
      db += dy;
    }
  }
  dw = column_sum(dw, shared);
  db = column_sum(db, shared);
  if (threadIdx.y == 0 && c < C) {
    dweight[c] += dw;
    dbias[c] += db;
  }
}

}  // namespace

void layernorm_forward(cudaStream_t stream, float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, index_t N, index_t C, float eps) {
  if (N == 0) return;
  layernorm_forward_kernel<<<row_blocks(N), row_threads(C), 0, stream>>>(out, mean, rstd, inp, weight, bias,
                                                                         C, eps);
  FLOWLM_CUDA_CHECK_LAUNCH(layernorm_forward_kernel);
}

void layernorm_backward(cudaStream_t stream, float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean, const float* rstd,
                        index_t N, index_t C) {
  if (N == 0) return;
  layernorm_backward_input_kernel<<<row_blocks(N), row_threads(C), 0, stream>>>(dinp, dout, inp, weight, mean,
                                                                                rstd, C);
  FLOWLM_CUDA_CHECK_LAUNCH(layernorm_backward_input_kernel);
  const dim3 block(kWarpSize, kColumnRows);
  layernorm_backward_params_kernel<<<static_cast<unsigned>(ceil_div(C, kWarpSize)), block, 0, stream>>>(
      dweight, dbias, dout, inp, mean, rstd, N, C);
  FLOWLM_CUDA_CHECK_LAUNCH(layernorm_backward_params_kernel);
}

}  // namespace flowlm::kernels::cuda
