// What the CUDA backend sees at run time. Declared for every build; without CUDA compiled
// in, device_count() is 0 and the description says why.
#pragma once

#include <string>

namespace flowlm::kernels::cuda {

/// \brief Number of visible CUDA devices (0 when none, or when the driver is missing).
int device_count();

/// \brief e.g. "CUDA 13.0 runtime, 1 device (NVIDIA H100, sm_90)" or "CUDA 13.0 runtime, no device".
std::string description();

}  // namespace flowlm::kernels::cuda
