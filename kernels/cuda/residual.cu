#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/residual.cuh"

namespace flowlm::kernels::cuda {

namespace {

// One thread per element (grid-stride); each reads its inputs before writing the same index, so
// out may alias a or b.
__global__ void residual_forward_kernel(float* out, const float* a, const float* b, index_t n) {
  for (index_t i = grid_index(); i < n; i += grid_stride()) out[i] = a[i] + b[i];
}

__global__ void residual_backward_kernel(float* da, float* db, const float* dout, index_t n) {
  for (index_t i = grid_index(); i < n; i += grid_stride()) {
    da[i] += dout[i];
    db[i] += dout[i];
  }
}

}  // namespace

void residual_forward(cudaStream_t stream, float* out, const float* a, const float* b, index_t n) {
  if (n == 0) return;
  residual_forward_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(out, a, b, n);
  FLOWLM_CUDA_CHECK_LAUNCH(residual_forward_kernel);
}

void residual_backward(cudaStream_t stream, float* da, float* db, const float* dout, index_t n) {
  if (n == 0) return;
  residual_backward_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(da, db, dout, n);
  FLOWLM_CUDA_CHECK_LAUNCH(residual_backward_kernel);
}

}  // namespace flowlm::kernels::cuda
