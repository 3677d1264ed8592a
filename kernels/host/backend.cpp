#include "kernels/backend.hpp"

#include <Kokkos_Core.hpp>
#include <fmt/format.h>

#include "kernels/host/blas.hpp"

namespace flowlm::kernels {

BackendScope::BackendScope(int& argc, char** argv) {
  Kokkos::initialize(argc, argv);
  // BLAS runs between Kokkos parallel regions on the same cores: give it the same threads.
  blas_set_threads(backend_concurrency());
}

BackendScope::~BackendScope() {
  if (Kokkos::is_initialized()) Kokkos::finalize();
}

int backend_concurrency() {
  return Kokkos::is_initialized() ? Kokkos::DefaultHostExecutionSpace::concurrency() : 1;
}

std::string backend_description() {
  const std::string space = Kokkos::DefaultHostExecutionSpace::name();
  const int major = KOKKOS_VERSION / 10000, minor = (KOKKOS_VERSION / 100) % 100, patch = KOKKOS_VERSION % 100;
  if (!Kokkos::is_initialized()) return fmt::format("Kokkos {}.{}.{}, {}", major, minor, patch, space);
  return fmt::format("Kokkos {}.{}.{}, {} ({} threads), BLAS {}", major, minor, patch, space,
                     backend_concurrency(), blas_name());
}

}  // namespace flowlm::kernels
