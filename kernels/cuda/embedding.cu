#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/embedding.cuh"

namespace flowlm::kernels::cuda {

namespace {

// One thread per output element i = n * C + c of out [N = B*T, C]; position t = n % T.
__global__ void embedding_forward_kernel(float* out, const std::int32_t* tokens, const float* wte,
                                         const float* wpe, index_t N, index_t T, index_t C, index_t V,
                                         float scale, unsigned long long* bad) {
  for (index_t i = grid_index(); i < N * C; i += grid_stride()) {
    const index_t n = i / C, c = i % C;
    const index_t tok = tokens[n];
    if (tok < 0 || tok >= V) {
      if (c == 0) atomicMin(bad, static_cast<unsigned long long>(n));
      out[i] = 0.0f;
      continue;
    }
    const float pos = wpe ? wpe[(n % T) * C + c] : 0.0f;
    out[i] = scale * wte[tok * C + c] + pos;
  }
}

// One thread per element of dout [N, C]: scatters into the token's row of dwte.
__global__ void embedding_backward_wte_kernel(float* dwte, const float* dout, const std::int32_t* tokens,
                                              index_t N, index_t C, index_t V, float scale,
                                              unsigned long long* bad) {
  for (index_t i = grid_index(); i < N * C; i += grid_stride()) {
    const index_t n = i / C, c = i % C;
    const index_t tok = tokens[n];
    if (tok < 0 || tok >= V) {
      if (c == 0) atomicMin(bad, static_cast<unsigned long long>(n));
      continue;
    }
    atomicAdd(&dwte[tok * C + c], scale * dout[i]);
  }
}

// One thread per element (t, c) of dwpe [T, C] (rows >= T untouched): sums dout[b, t, c] over b in order.
__global__ void embedding_backward_wpe_kernel(float* dwpe, const float* dout, index_t B, index_t T,
                                              index_t C) {
  for (index_t i = grid_index(); i < T * C; i += grid_stride()) {
    float s = 0.0f;
    for (index_t b = 0; b < B; ++b) s += dout[b * T * C + i];
    dwpe[i] += s;
  }
}

}  // namespace

void embedding_forward(cudaStream_t stream, float* out, const std::int32_t* tokens, const float* wte,
                       const float* wpe, index_t B, index_t T, index_t C, index_t V, float scale,
                       unsigned long long* bad) {
  const index_t N = B * T;
  if (N * C == 0) return;
  embedding_forward_kernel<<<elementwise_blocks(N * C), kElementwiseThreads, 0, stream>>>(
      out, tokens, wte, wpe, N, T, C, V, scale, bad);
  FLOWLM_CUDA_CHECK_LAUNCH(embedding_forward_kernel);
}

void embedding_backward(cudaStream_t stream, float* dwte, float* dwpe, const float* dout,
                        const std::int32_t* tokens, index_t B, index_t T, index_t C, index_t V, float scale,
                        unsigned long long* bad) {
  const index_t N = B * T;
  if (N * C == 0) return;
  embedding_backward_wte_kernel<<<elementwise_blocks(N * C), kElementwiseThreads, 0, stream>>>(
      dwte, dout, tokens, N, C, V, scale, bad);
  FLOWLM_CUDA_CHECK_LAUNCH(embedding_backward_wte_kernel);
  if (dwpe) {
    embedding_backward_wpe_kernel<<<elementwise_blocks(T * C), kElementwiseThreads, 0, stream>>>(dwpe, dout,
                                                                                                 B, T, C);
    FLOWLM_CUDA_CHECK_LAUNCH(embedding_backward_wpe_kernel);
  }
}

}  // namespace flowlm::kernels::cuda
