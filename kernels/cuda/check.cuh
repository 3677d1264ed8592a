// Error checking for CUDA runtime, kernel launch and cuBLAS calls: failures become flowlm::Error
// with the call's text, file and line, never exit().
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "core/error.hpp"

namespace flowlm::kernels::cuda {

inline void cuda_check(cudaError_t err, const char* call, const char* file, int line) {
  if (err != cudaSuccess)
    fail<Error>("CUDA error '{}' ({}) in {} at {}:{}", cudaGetErrorString(err), cudaGetErrorName(err), call,
                file, line);
}

inline void cublas_check(cublasStatus_t status, const char* call, const char* file, int line) {
  if (status != CUBLAS_STATUS_SUCCESS)
    fail<Error>("cuBLAS error '{}' ({}) in {} at {}:{}", cublasGetStatusString(status),
                cublasGetStatusName(status), call, file, line);
}

}  // namespace flowlm::kernels::cuda

/// \brief Throws flowlm::Error when a CUDA runtime call fails.
#define FLOWLM_CUDA_CHECK(call) ::flowlm::kernels::cuda::cuda_check((call), #call, __FILE__, __LINE__)
/// \brief After `kernel<<<...>>>(...)`: throws when the launch failed (bad configuration, no kernel image
/// for this GPU). Errors inside a running kernel surface at the next synchronizing call.
#define FLOWLM_CUDA_CHECK_LAUNCH(kernel) \
  ::flowlm::kernels::cuda::cuda_check(cudaGetLastError(), "the launch of " #kernel, __FILE__, __LINE__)
/// \brief Throws flowlm::Error when a cuBLAS call fails.
#define FLOWLM_CUBLAS_CHECK(call) ::flowlm::kernels::cuda::cublas_check((call), #call, __FILE__, __LINE__)
