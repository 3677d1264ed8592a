// The BLAS the host backend calls (OpenBLAS through CBLAS), behind two small helpers.
#pragma once

#include <string>

namespace flowlm::kernels {

void blas_set_threads(int n);
std::string blas_name();

}  // namespace flowlm::kernels
