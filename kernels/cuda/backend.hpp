// The "cuda" backend behind make_backend (internal to kernels/; compiled only with CUDA).
#pragma once

#include <memory>

#include "kernels/backend.hpp"

namespace flowlm::kernels::cuda {

/// \brief "cuda": fp32 CUDA kernels and cuBLAS GEMMs on the current CUDA device, on one stream of its
/// own. make_backend() checks first that a device is visible (a ConfigError otherwise).
std::unique_ptr<Backend> make_cuda_backend();

}  // namespace flowlm::kernels::cuda
