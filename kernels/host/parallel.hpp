// Internals shared by the host kernels (not part of the API): Kokkos range policies over host
// threads, a block-wise loop for element-wise kernels, a deterministic column sum, and exp/sigmoid
// approximations that the compiler can vectorize (libm's expf is scalar without -ffast-math).
#pragma once

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/types.hpp"

namespace flowlm::kernels::host {

using HostExec = Kokkos::DefaultHostExecutionSpace;
using HostRange = Kokkos::RangePolicy<HostExec, Kokkos::IndexType<index_t>>;

/// \brief The policy i = 0 .. n-1 on the host threads.
inline HostRange host_range(index_t n) { return HostRange(0, n); }

/// \brief Element-wise kernels run f(begin, end) over blocks, so the inner loop is a plain
/// contiguous loop the compiler vectorizes.
constexpr index_t kBlock = 8192;
template <class F>
void for_blocks(const char* label, index_t n, F f) {
  const index_t nb = (n + kBlock - 1) / kBlock;
  Kokkos::parallel_for(label, host_range(nb),
                       [=](const index_t k) { f(k * kBlock, std::min(n, (k + 1) * kBlock)); });
}

/// \brief Rows are split into this many fixed chunks (independent of the thread count) for
/// reductions over rows, so results are bitwise reproducible for any thread count.
constexpr index_t kRowChunks = 32;

/// \brief dst[c] += sum_n src[n*C + c]: per-chunk partial sums, then the chunks added in order.
void column_sum_accumulate(const char* label, float* dst, const float* src, index_t N, index_t C);

/// \brief dst[c] += sum_k part[k*C + c] for k = 0 .. chunks-1 in order (the second half of a
/// deterministic reduction over row chunks).
void add_chunk_partials(const char* label, float* dst, const float* part, index_t chunks, index_t C);

/// \brief exp(x), within 2 ulp for x in [-86.9, 69.7] (Cephes expf: 2^n * p(r), r = x - n ln2).
/// Below that range it returns 0 and above it saturates near 2^100 ~ 1e30 (NaN too), so neither
/// the result nor a sigmoid 1 / (1 + exp) >= 1e-30 or products of it with O(1e-7) gradients are
/// denormals (denormal arithmetic is ~100x slower on x86). Callers use it for x <= 0 (softmax)
/// and for sigmoids, where the saturation changes nothing visible in float. Only integer compares and no
/// float->int conversion, so GCC vectorizes loops that call it (float compares and conversions are control
/// flow under -ftrapping-math).
KOKKOS_FORCEINLINE_FUNCTION float exp_approx(float x) {
  // |x| <= 104 on the bit pattern, which keeps the rounding trick below in range.
  std::int32_t xb;
  std::memcpy(&xb, &x, sizeof(xb));
  const std::int32_t sign = xb & static_cast<std::int32_t>(0x80000000u);
  xb = std::min(xb & 0x7fffffff, 0x42D00000) | sign;  // 0x42D00000 == 104.0f
  std::memcpy(&x, &xb, sizeof(x));
  // y = round(x / ln2) + 1.5 * 2^23: the low mantissa bits of y hold round(x / ln2) as an integer.
  const float y = x * 1.44269504088896341f + 12582912.0f;
  std::int32_t n;
  std::memcpy(&n, &y, sizeof(n));
  n -= 0x4B400000;
  const float fn = y - 12582912.0f;
  const float r = x - fn * 0.693359375f - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  n = std::min(std::max(n, -126), 100);
  const std::int32_t keep = -static_cast<std::int32_t>(n > -126);  // all ones, or 0 to flush to zero
  const std::int32_t bits = ((n + 127) << 23) & keep;
  float pow2n;
  std::memcpy(&pow2n, &bits, sizeof(pow2n));
  return p * pow2n;
}

}  // namespace flowlm::kernels::host
