// What the CUDA backend sees at run time. Declared for every build; without CUDA compiled
// in (kernels/make_backend.cpp defines them then), device_count() is 0 and the texts say why.
#pragma once

#include <string>

namespace flowlm::kernels::cuda {

/// \brief Number of visible CUDA devices (0 when none, or when the driver is missing).
int device_count();

/// \brief Why device_count() is 0, in the CUDA runtime's words (e.g. "no CUDA-capable device is
/// detected"); empty when a device is visible.
std::string no_device_reason();

/// \brief e.g. "CUDA 13.0 runtime, 1 device (NVIDIA H100, sm_90)" or "CUDA 13.0 runtime, no device".
std::string description();

}  // namespace flowlm::kernels::cuda
