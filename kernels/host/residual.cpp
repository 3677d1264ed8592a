// Host residual add and its backward, element-wise over blocks.
#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::for_blocks;

// out = a + b.
void residual_forward(float* out, const float* a, const float* b, index_t N) {
  for_blocks("flowlm::residual_forward", N, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) out[i] = a[i] + b[i];
  });
}

// da += dout, db += dout.
void residual_backward(float* da, float* db, const float* dout, index_t N) {
  for_blocks("flowlm::residual_backward", N, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) {
      da[i] += dout[i];
      db[i] += dout[i];
    }
  });
}

}  // namespace flowlm::kernels
