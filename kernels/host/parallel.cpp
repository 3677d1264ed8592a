#include "kernels/host/parallel.hpp"

namespace flowlm::kernels::host {

void column_sum_accumulate(const char* label, float* dst, const float* src, index_t N, index_t C) {
  if (N <= 0 || C <= 0) return;
  const index_t chunks = std::min(N, kRowChunks);
  const index_t per = (N + chunks - 1) / chunks;
  std::vector<float> partial(static_cast<std::size_t>(chunks * C));
  float* part = partial.data();
  Kokkos::parallel_for(label, host_range(chunks), [=](const index_t k) {
    float* pk = part + k * C;
    for (index_t c = 0; c < C; ++c) pk[c] = 0.0f;
    const index_t end = std::min(N, (k + 1) * per);
    for (index_t n = k * per; n < end; ++n) {
      const float* row = src + n * C;
      for (index_t c = 0; c < C; ++c) pk[c] += row[c];
    }
  });
  add_chunk_partials(label, dst, part, chunks, C);
}

void add_chunk_partials(const char* label, float* dst, const float* part, index_t chunks, index_t C) {
  Kokkos::parallel_for(label, host_range(C), [=](const index_t c) {
    float s = 0.0f;
    for (index_t k = 0; k < chunks; ++k) s += part[k * C + c];
    dst[c] += s;
  });
}

}  // namespace flowlm::kernels::host
