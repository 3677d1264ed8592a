#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/glu.cuh"

namespace flowlm::kernels::cuda {

namespace {

__device__ __forceinline__ float act(float x, bool swiglu) { return swiglu ? silu(x) : gelu(x); }
__device__ __forceinline__ float act_grad(float x, bool swiglu) {
  return swiglu ? silu_grad(x) : gelu_grad(x);
}

// One thread per output element i = n F + f; its gate is inp[n, f] and its up inp[n, F + f].
__global__ void glu_forward_kernel(float* out, const float* inp, index_t N, index_t F, bool swiglu) {
  for (index_t i = grid_index(); i < N * F; i += grid_stride()) {
    const index_t n = i / F, f = i % F;
    out[i] = act(inp[n * 2 * F + f], swiglu) * inp[n * 2 * F + F + f];
  }
}

__global__ void glu_backward_kernel(float* dinp, const float* inp, const float* dout, index_t N, index_t F,
                                    bool swiglu) {
  for (index_t i = grid_index(); i < N * F; i += grid_stride()) {
    const index_t n = i / F, f = i % F;
    const float gate = inp[n * 2 * F + f], up = inp[n * 2 * F + F + f], dy = dout[i];
    dinp[n * 2 * F + f] += dy * up * act_grad(gate, swiglu);
    dinp[n * 2 * F + F + f] += dy * act(gate, swiglu);
  }
}

}  // namespace

void glu_forward(cudaStream_t stream, float* out, const float* inp, index_t N, index_t F, GluKind kind) {
  if (N * F == 0) return;
  glu_forward_kernel<<<elementwise_blocks(N * F), kElementwiseThreads, 0, stream>>>(out, inp, N, F,
                                                                                    kind == GluKind::swiglu);
  FLOWLM_CUDA_CHECK_LAUNCH(glu_forward_kernel);
}

void glu_backward(cudaStream_t stream, float* dinp, const float* inp, const float* dout, index_t N, index_t F,
                  GluKind kind) {
  if (N * F == 0) return;
  glu_backward_kernel<<<elementwise_blocks(N * F), kElementwiseThreads, 0, stream>>>(dinp, inp, dout, N, F,
                                                                                     kind == GluKind::swiglu);
  FLOWLM_CUDA_CHECK_LAUNCH(glu_backward_kernel);
}

}  // namespace flowlm::kernels::cuda
