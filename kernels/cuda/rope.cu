#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rope.cuh"

namespace flowlm::kernels::cuda {

namespace {

// One thread per rotated pair: i = ((b T + t) H + h) half + j over the H = NH + KVH q and k heads of
// each position, pair j = (x[j], x[j + half]) of head h, at position t (or start[b] + t). The angle is
// computed in double as in the reference: at long contexts t * inv_freq loses too many digits in float.
// sign = -1 rotates back.
__global__ void rope_kernel(float* qkv, const std::int32_t* start, index_t BT, index_t T, index_t heads,
                            index_t hd, index_t row, double theta, double sign) {
  const index_t half = hd / 2;
  for (index_t i = grid_index(); i < BT * heads * half; i += grid_stride()) {
    const index_t j = i % half, h = (i / half) % heads, bt = i / (half * heads);
    const index_t t = (start ? start[bt / T] : 0) + bt % T;
    const double angle =
        static_cast<double>(t) * pow(theta, -2.0 * static_cast<double>(j) / static_cast<double>(hd));
    double s, c;
    sincos(angle, &s, &c);
    s *= sign;
    float* x = qkv + bt * row + h * hd;
    const double x1 = x[j], x2 = x[j + half];
    x[j] = static_cast<float>(x1 * c - x2 * s);
    x[j + half] = static_cast<float>(x2 * c + x1 * s);
  }
}

void rope(cudaStream_t stream, float* qkv, const std::int32_t* start, index_t B, index_t T,
          const RopeParams& p, double sign) {
  const index_t heads = p.n_head + p.n_kv_head, row = (p.n_head + 2 * p.n_kv_head) * p.head_dim;
  const index_t n = B * T * heads * (p.head_dim / 2);
  if (n == 0) return;
  rope_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(
      qkv, start, B * T, T, heads, p.head_dim, row, static_cast<double>(p.theta), sign);
  FLOWLM_CUDA_CHECK_LAUNCH(rope_kernel);
}

}  // namespace

void rope_forward(cudaStream_t stream, float* qkv, index_t B, index_t T, const RopeParams& p) {
  rope(stream, qkv, nullptr, B, T, p, 1.0);
}

void rope_backward(cudaStream_t stream, float* dqkv, index_t B, index_t T, const RopeParams& p) {
  rope(stream, dqkv, nullptr, B, T, p, -1.0);
}

void rope_forward_at(cudaStream_t stream, float* qkv, const std::int32_t* start, index_t B, index_t T,
                     const RopeParams& p) {
  rope(stream, qkv, start, B, T, p, 1.0);
}

}  // namespace flowlm::kernels::cuda
