// Reference residual add and its backward.
#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

// out = a + b.
void residual_forward(float* out, const float* a, const float* b, index_t N) {
  for (index_t i = 0; i < N; ++i) out[i] = a[i] + b[i];
}

// da += dout, db += dout.
void residual_backward(float* da, float* db, const float* dout, index_t N) {
  for (index_t i = 0; i < N; ++i) {
    da[i] += dout[i];
    db[i] += dout[i];
  }
}

}  // namespace flowlm::kernels::ref
