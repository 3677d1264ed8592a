#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gelu.cuh"

namespace flowlm::kernels::cuda {

namespace {

// One thread per element (grid-stride).
__global__ void gelu_forward_kernel(float* out, const float* inp, index_t n) {
  for (index_t i = grid_index(); i < n; i += grid_stride()) out[i] = gelu(inp[i]);
}

__global__ void gelu_backward_kernel(float* dinp, const float* inp, const float* dout, index_t n) {
  for (index_t i = grid_index(); i < n; i += grid_stride()) dinp[i] += gelu_grad(inp[i]) * dout[i];
}

}  // namespace

void gelu_forward(cudaStream_t stream, float* out, const float* inp, index_t n) {
  if (n == 0) return;
  gelu_forward_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(out, inp, n);
  FLOWLM_CUDA_CHECK_LAUNCH(gelu_forward_kernel);
}

void gelu_backward(cudaStream_t stream, float* dinp, const float* inp, const float* dout, index_t n) {
  if (n == 0) return;
  gelu_backward_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(dinp, inp, dout, n);
  FLOWLM_CUDA_CHECK_LAUNCH(gelu_backward_kernel);
}

}  // namespace flowlm::kernels::cuda
