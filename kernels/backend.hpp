// Start-up and description of the host kernel backend (Kokkos). Only kernels/ includes
// Kokkos headers; everything else sees this.
#pragma once

#include <string>

namespace flowlm::kernels {

/// \brief RAII: initializes Kokkos (and matches OpenBLAS's thread count to it) for the
/// lifetime of the object; one per process, created after MPI.
class BackendScope {
 public:
  BackendScope(int& argc, char** argv);
  ~BackendScope();
  BackendScope(const BackendScope&) = delete;
  BackendScope& operator=(const BackendScope&) = delete;
};

/// \brief e.g. "Kokkos 3.4.1, OpenMP (2 threads)"; usable before initialization too.
std::string backend_description();

/// \brief Threads the host backend runs on (1 for Serial).
int backend_concurrency();

}  // namespace flowlm::kernels
