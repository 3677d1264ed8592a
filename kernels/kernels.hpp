// The kernels as free functions on plain row-major fp32 arrays (llm.c style): the bodies behind
// the Backend interface (kernels/backend.hpp), one implementation per op and backend.
//
//   flowlm::kernels::*       host backend: Kokkos parallel loops + BLAS GEMMs (kernels/host/)
//   flowlm::kernels::ref::*  plain single-threaded reference with the same signatures
//                            (kernels/reference/), the ground truth of the parity tests
//
// Shapes: B batch, T time, C channels, NH heads, KVH key/value heads, hd head size, V vocabulary,
// N = B*T rows, F gated-MLP width.
// Conventions, the same for every backend (and for Backend's ops):
//  - Forward functions overwrite their outputs.
//  - Backward functions ACCUMULATE (+=) into every gradient they write (the caller zeroes
//    gradients once per step), except where a comment says "overwrites" or "in place".
//  - A pointer documented as "may be null" is skipped when null.
#pragma once

#include <cstdint>

#include "core/types.hpp"
#include "kernels/ops.hpp"

namespace flowlm::kernels {

#include "kernels/kernel_api.inc"

namespace ref {
#include "kernels/kernel_api.inc"
}  // namespace ref

}  // namespace flowlm::kernels
