// The backend API: every operation the GPT model needs, forward and backward, on plain
// row-major fp32 arrays (llm.c style). Only kernels/ knows which backend runs them.
//
//   flowlm::kernels::*       host backend: Kokkos parallel loops + BLAS GEMMs (kernels/host/)
//   flowlm::kernels::ref::*  plain single-threaded reference with the same signatures
//                            (kernels/reference/), used by the parity tests
//
// Shapes: B batch, T time, C channels, NH heads (C % NH == 0), V vocabulary, N = B*T rows.
// Conventions, the same for every backend:
//  - Forward functions overwrite their outputs.
//  - Backward functions ACCUMULATE (+=) into every gradient they write (the caller zeroes
//    gradients once per step), except where a comment says "overwrites".
//  - A pointer documented as "may be null" is skipped when null.
#pragma once

#include <cstdint>

#include "core/types.hpp"

namespace flowlm::kernels {

#include "kernels/kernel_api.inc"

namespace ref {
#include "kernels/kernel_api.inc"
}  // namespace ref

}  // namespace flowlm::kernels
