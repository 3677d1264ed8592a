// Gated MLP activations (swiglu, geglu) on a packed [N, 2F] gate/up buffer, on the GPU (see
// kernels/reference/glu.cpp for the math).
#pragma once

#include <cuda_runtime.h>

#include "core/types.hpp"
#include "kernels/ops.hpp"

namespace flowlm::kernels::cuda {

/// \brief out[n, f] = act(inp[n, f]) * inp[n, F + f], act = silu (swiglu) or tanh-GELU (geglu).
void glu_forward(cudaStream_t stream, float* out, const float* inp, index_t N, index_t F, GluKind kind);
/// \brief dinp[n, f] += dout * up * act'(gate); dinp[n, F + f] += dout * act(gate).
void glu_backward(cudaStream_t stream, float* dinp, const float* inp, const float* dout, index_t N, index_t F,
                  GluKind kind);

}  // namespace flowlm::kernels::cuda
