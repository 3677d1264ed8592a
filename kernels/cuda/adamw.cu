#include <cmath>

#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"

namespace flowlm::kernels::cuda {

namespace {

// One thread per element (grid-stride): g = grad * grad_scale; m = b1 m + (1-b1) g;
// v = b2 v + (1-b2) g^2; param -= lr (m / bc1 / (sqrt(v / bc2) + eps) + wd param).
__global__ void adamw_kernel(float* param, float* m, float* v, const float* grad, index_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay, float grad_scale,
                             double bc1, double bc2) {
  for (index_t i = grid_index(); i < n; i += grid_stride()) {
    const float g = grad[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const double mhat = mi / bc1, vhat = vi / bc2;
    const float p = param[i];
    param[i] = p - static_cast<float>(lr * (mhat / (sqrt(vhat) + eps) + weight_decay * p));
  }
}

}  // namespace

void adamw_update(cudaStream_t stream, float* param, float* m, float* v, const float* grad, index_t n,
                  const AdamwParams& p) {
  if (n == 0) return;
  const double bc1 = 1.0 - std::pow(static_cast<double>(p.beta1), static_cast<double>(p.step));
  const double bc2 = 1.0 - std::pow(static_cast<double>(p.beta2), static_cast<double>(p.step));
  adamw_kernel<<<elementwise_blocks(n), kElementwiseThreads, 0, stream>>>(
      param, m, v, grad, n, p.lr, p.beta1, p.beta2, p.eps, p.weight_decay, p.grad_scale, bc1, bc2);
  FLOWLM_CUDA_CHECK_LAUNCH(adamw_kernel);
}

}  // namespace flowlm::kernels::cuda
