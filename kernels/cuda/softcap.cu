#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/softcap.cuh"

namespace flowlm::kernels::cuda {

namespace {

// One thread per element (grid-stride); in place is fine (same index read, then written).
__global__ void softcap_forward_kernel(float* out, const float* inp, index_t n, float cap) {
  for (index_t i = grid_index(); i < n; i += grid_stride()) out[i] = cap * tanhf(inp[i] / cap);
}

__global__ void softcap_backward_kernel(float* dinp, const float* out, const float* dout, index_t n,
                                        float cap) {
  for (index_t i = grid_index(); i < n; i += grid_stride()) {
    const float th = out[i] / cap;
    dinp[i] += dout[i] * (1.0f - th * th);
  }
}

}  // namespace

void softcap_forward(cudaStream_t stream, float* out, const float* inp, index_t n, float cap) {
  if (n == 0) return;
  softcap_forward_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(out, inp, n, cap);
  FLOWLM_CUDA_CHECK_LAUNCH(softcap_forward_kernel);
}

void softcap_backward(cudaStream_t stream, float* dinp, const float* out, const float* dout, index_t n,
                      float cap) {
  if (n == 0) return;
  softcap_backward_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(dinp, out, dout, n, cap);
  FLOWLM_CUDA_CHECK_LAUNCH(softcap_backward_kernel);
}

}  // namespace flowlm::kernels::cuda
