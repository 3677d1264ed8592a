#include <cuda_runtime.h>
#include <fmt/format.h>

#include "kernels/cuda/check.cuh"
#include "kernels/cuda/device.hpp"

namespace flowlm::kernels::cuda {

int device_count() {
  int n = 0;
  // No driver or no device is a normal state on login and CPU nodes, not an error.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

std::string no_device_reason() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return cudaGetErrorString(err);
  }
  return n == 0 ? "the CUDA runtime reports 0 devices" : "";
}

std::string description() {
  int rt = 0;
  FLOWLM_CUDA_CHECK(cudaRuntimeGetVersion(&rt));
  std::string s = fmt::format("CUDA {}.{} runtime", rt / 1000, (rt % 1000) / 10);
  const int n = device_count();
  if (n == 0) return s + ", no device visible";
  cudaDeviceProp prop{};
  FLOWLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  return fmt::format("{}, {} device{} ({}, sm_{}{})", s, n, n == 1 ? "" : "s", prop.name, prop.major,
                     prop.minor);
}

}  // namespace flowlm::kernels::cuda
