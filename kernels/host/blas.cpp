#include "kernels/host/blas.hpp"

#include <cblas.h>

namespace flowlm::kernels {

void blas_set_threads(int n) { openblas_set_num_threads(n); }

std::string blas_name() {
  const char* cfg = openblas_get_config();
  return cfg ? std::string(cfg) : std::string("OpenBLAS");
}

}  // namespace flowlm::kernels
