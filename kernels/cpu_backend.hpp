// The host-memory backends behind make_backend (internal to kernels/).
#pragma once

#include <memory>

#include "kernels/backend.hpp"

namespace flowlm::kernels {

/// \brief "host": Kokkos parallel loops and OpenBLAS GEMMs (kernels/host/); needs a live BackendScope.
std::unique_ptr<Backend> make_host_backend();

/// \brief "reference": single-threaded plain loops, sums in double (kernels/reference/).
std::unique_ptr<Backend> make_reference_backend();

}  // namespace flowlm::kernels
