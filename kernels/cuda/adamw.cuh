// AdamW with decoupled weight decay on the GPU (see kernels/reference/adamw.cpp for the math).
#pragma once

#include <cuda_runtime.h>

#include "core/types.hpp"
#include "kernels/ops.hpp"

namespace flowlm::kernels::cuda {

/// \brief One AdamW step on n elements of param, m and v: moments in float, the bias-corrected
/// update in double, as the reference.
void adamw_update(cudaStream_t stream, float* param, float* m, float* v, const float* grad, index_t n,
                  const AdamwParams& p);

}  // namespace flowlm::kernels::cuda
