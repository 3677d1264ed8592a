#include "kernels/backend.hpp"

#include <fmt/format.h>
#include <Kokkos_Core.hpp>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/host/blas.hpp"

namespace flowlm::kernels {

BackendScope::BackendScope(int& argc, char** argv) {
  // Kokkos sees only its own --kokkos-* arguments (it would answer --help itself), and they
  // are taken out of argv for the application's parser.
  std::vector<char*> mine{argv[0]};
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--kokkos-", 9) == 0)
      mine.push_back(argv[i]);
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  argv[argc] = nullptr;
  int n = static_cast<int>(mine.size());
  mine.push_back(nullptr);
  // Unset OMP_PROC_BIND already means "no binding"; saying so explicitly keeps Kokkos from
  // printing a warning on every start without changing what the OpenMP runtime does.
  setenv("OMP_PROC_BIND", "false", /*overwrite=*/0);
  Kokkos::initialize(n, mine.data());
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
  const int major = KOKKOS_VERSION / 10000, minor = (KOKKOS_VERSION / 100) % 100,
            patch = KOKKOS_VERSION % 100;
  if (!Kokkos::is_initialized()) return fmt::format("Kokkos {}.{}.{}, {}", major, minor, patch, space);
  return fmt::format("Kokkos {}.{}.{}, {} ({} threads), BLAS {}", major, minor, patch, space,
                     backend_concurrency(), blas_name());
}

}  // namespace flowlm::kernels
