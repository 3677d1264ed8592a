// Error checking for CUDA runtime and cuBLAS calls: failures become flowlm::Error with the
// call, file and line, never exit().
#pragma once

#include <cuda_runtime.h>

#include "core/error.hpp"

namespace flowlm::kernels::cuda {

inline void cuda_check(cudaError_t err, const char* call, const char* file, int line) {
  if (err != cudaSuccess)
    fail<Error>("CUDA error '{}' in {} at {}:{}", cudaGetErrorString(err), call, file, line);
}

}  // namespace flowlm::kernels::cuda

#define FLOWLM_CUDA_CHECK(call) ::flowlm::kernels::cuda::cuda_check((call), #call, __FILE__, __LINE__)
