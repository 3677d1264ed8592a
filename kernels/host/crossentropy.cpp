// Host softmax cross-entropy (one row per work item) and per-sample loss reduction.
#include <cfloat>
#include <cmath>

#include "core/error.hpp"
#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::exp_approx;
using host::host_range;

namespace {
// Targets are checked serially before the parallel loop: nothing may throw inside a Kokkos lambda.
template <class Counted>
void check_targets(const char* fn, const std::int32_t* targets, index_t N, index_t V, Counted counted) {
  for (index_t n = 0; n < N; ++n) {
    if (counted(n) && (targets[n] < 0 || targets[n] >= V)) {
      fail<DataError>(
          "{}: target token {} at row {} is outside [0, {}); the data's vocabulary does not "
          "match the model's vocab_size",
          fn, targets[n], n, V);
    }
  }
}

float row_max(const float* x, index_t V) {
  float m = -FLT_MAX;
#pragma omp simd reduction(max : m)
  for (index_t v = 0; v < V; ++v) m = std::max(m, x[v]);
  return m;
}
}  // namespace

// losses[n] = log(sum_v exp(x_v - max)) + max - x_target, or 0 where mask[n] == 0.
void crossentropy_forward(float* losses, const float* logits, const std::int32_t* targets, const float* mask,
                          index_t N, index_t V) {
  check_targets("crossentropy_forward", targets, N, V, [=](index_t n) { return !mask || mask[n] != 0.0f; });
  Kokkos::parallel_for("flowlm::crossentropy_forward", host_range(N), [=](const index_t n) {
    if (mask && mask[n] == 0.0f) {
      losses[n] = 0.0f;
      return;
    }
    const float* x = logits + n * V;
    const float m = row_max(x, V);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (index_t v = 0; v < V; ++v) sum += exp_approx(x[v] - m);
    losses[n] = std::log(sum) + m - x[targets[n]];
  });
}

// dlogits = dloss * (softmax - onehot). The exponentials go straight into dlogits and are then
// scaled by dloss / sum: one exp pass, and element v is read before it is written (in-place safe).
void crossentropy_backward(float* dlogits, const float* logits, const std::int32_t* targets,
                           const float* dlosses, index_t N, index_t V) {
  check_targets("crossentropy_backward", targets, N, V, [=](index_t n) { return dlosses[n] != 0.0f; });
  Kokkos::parallel_for("flowlm::crossentropy_backward", host_range(N), [=](const index_t n) {
    float* dx = dlogits + n * V;
    const float dl = dlosses[n];
    if (dl == 0.0f) {
      for (index_t v = 0; v < V; ++v) dx[v] = 0.0f;
      return;
    }
    const float* x = logits + n * V;
    const float m = row_max(x, V);
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (index_t v = 0; v < V; ++v) {
      const float e = exp_approx(x[v] - m);
      dx[v] = e;
      sum += e;
    }
    const float s = dl / sum;
    for (index_t v = 0; v < V; ++v) dx[v] *= s;
    dx[targets[n]] -= dl;
  });
}

// tokens[b] = sum_t mask; sample_loss[b] = sum_t loss * mask / tokens[b] (0 for an empty sample).
void per_sample_loss(float* sample_loss, float* tokens, const float* losses, const float* mask, index_t B,
                     index_t T) {
  Kokkos::parallel_for("flowlm::per_sample_loss", host_range(B), [=](const index_t b) {
    double count = 0.0, sum = 0.0;
    for (index_t t = 0; t < T; ++t) {
      const double w = mask ? mask[b * T + t] : 1.0;
      count += w;
      sum += static_cast<double>(losses[b * T + t]) * w;
    }
    tokens[b] = static_cast<float>(count);
    sample_loss[b] = count == 0.0 ? 0.0f : static_cast<float>(sum / count);
  });
}

}  // namespace flowlm::kernels
