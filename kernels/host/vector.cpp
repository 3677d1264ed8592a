// Host vector ops: sum of squares, dot, scale, finiteness, axpby. Reductions sum fixed blocks into a vector
// of partials that is then added in order, so results do not depend on the thread count.
#include <cmath>

#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::for_blocks;
using host::host_range;
using host::kBlock;

namespace {
// sum_i x_i y_i in double: per-block partials, added in block order (x == y: sum of squares).
double blocked_dot(const char* label, const float* x, const float* y, index_t n) {
  const index_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> partial(static_cast<std::size_t>(nb));
  double* part = partial.data();
  for_blocks(label, n, [=](index_t i0, index_t i1) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (index_t i = i0; i < i1; ++i) s += static_cast<double>(x[i]) * y[i];
    part[i0 / kBlock] = s;
  });
  double total = 0.0;
  for (const double s : partial) total += s;
  return total;
}
}  // namespace

double sum_squares(const float* x, index_t n) { return blocked_dot("flowlm::sum_squares", x, x, n); }

double dot(const float* x, const float* y, index_t n) { return blocked_dot("flowlm::dot", x, y, n); }

void scale(float* x, float s, index_t n) {
  for_blocks("flowlm::scale", n, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) x[i] *= s;
  });
}

void sign(float* out, const float* x, index_t n) {
  for_blocks("flowlm::sign", n, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) out[i] = static_cast<float>((x[i] > 0.0f) - (x[i] < 0.0f));
  });
}

// Inf and NaN are exactly the floats whose exponent bits are all ones.
bool all_finite(const float* x, index_t n) {
  const index_t nb = (n + kBlock - 1) / kBlock;
  index_t bad = 0;
  Kokkos::parallel_reduce(
      "flowlm::all_finite", host_range(nb),
      [=](const index_t k, index_t& count) {
        const index_t i1 = std::min(n, (k + 1) * kBlock);
        index_t c = 0;
        for (index_t i = k * kBlock; i < i1; ++i) {
          std::uint32_t bits;
          std::memcpy(&bits, x + i, sizeof(bits));
          c += (bits & 0x7f800000u) == 0x7f800000u;
        }
        count += c;
      },
      bad);
  return bad == 0;
}

// y = a x + b y; b == 0 never reads y (it may be uninitialised or NaN).
void axpby(float* y, const float* x, index_t n, float a, float b) {
  if (b == 0.0f) {
    for_blocks("flowlm::axpby", n, [=](index_t i0, index_t i1) {
      for (index_t i = i0; i < i1; ++i) y[i] = a * x[i];
    });
    return;
  }
  for_blocks("flowlm::axpby", n, [=](index_t i0, index_t i1) {
    for (index_t i = i0; i < i1; ++i) y[i] = a * x[i] + b * y[i];
  });
}

}  // namespace flowlm::kernels
