// Reference softmax cross-entropy (with loss mask) and per-sample loss reduction, in double.
#include <cmath>

#include "core/error.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

namespace {
void check_target(const char* fn, index_t n, std::int32_t target, index_t V) {
  if (target < 0 || target >= V) {
    fail<DataError>(
        "{}: target token {} at row {} is outside [0, {}); the data's vocabulary does not match "
        "the model's vocab_size",
        fn, target, n, V);
  }
}

// log sum_v exp(x[v]) with the max subtracted.
double log_sum_exp(const float* x, index_t V) {
  double maxv = x[0];
  for (index_t v = 1; v < V; ++v) maxv = std::max(maxv, static_cast<double>(x[v]));
  double sum = 0.0;
  for (index_t v = 0; v < V; ++v) sum += std::exp(x[v] - maxv);
  return maxv + std::log(sum);
}
}  // namespace

// losses[n] = logsumexp(logits[n]) - logits[n, target[n]] for counted rows, 0 otherwise.
void crossentropy_forward(float* losses, const float* logits, const std::int32_t* targets, const float* mask,
                          index_t N, index_t V) {
  for (index_t n = 0; n < N; ++n) {
    if (mask && mask[n] == 0.0f) {
      losses[n] = 0.0f;
      continue;
    }
    check_target("crossentropy_forward", n, targets[n], V);
    const float* x = logits + n * V;
    losses[n] = static_cast<float>(log_sum_exp(x, V) - x[targets[n]]);
  }
}

// dlogits[n, v] = dlosses[n] * (softmax(logits[n])[v] - [v == target]); each element is read before it is
// written at the same index, so dlogits may alias logits.
void crossentropy_backward(float* dlogits, const float* logits, const std::int32_t* targets,
                           const float* dlosses, index_t N, index_t V) {
  for (index_t n = 0; n < N; ++n) {
    const float* x = logits + n * V;
    float* dx = dlogits + n * V;
    if (dlosses[n] == 0.0f) {
      for (index_t v = 0; v < V; ++v) dx[v] = 0.0f;
      continue;
    }
    check_target("crossentropy_backward", n, targets[n], V);
    const double lse = log_sum_exp(x, V);
    for (index_t v = 0; v < V; ++v) {
      const double p = std::exp(x[v] - lse);
      dx[v] = static_cast<float>(dlosses[n] * (p - (v == targets[n] ? 1.0 : 0.0)));
    }
  }
}

void per_sample_loss(float* sample_loss, float* tokens, const float* losses, const float* mask, index_t B,
                     index_t T) {
  for (index_t b = 0; b < B; ++b) {
    double count = 0.0, sum = 0.0;
    for (index_t t = 0; t < T; ++t) {
      const double m = mask ? mask[b * T + t] : 1.0;
      count += m;
      sum += static_cast<double>(losses[b * T + t]) * m;
    }
    tokens[b] = static_cast<float>(count);
    sample_loss[b] = count == 0.0 ? 0.0f : static_cast<float>(sum / count);
  }
}

}  // namespace flowlm::kernels::ref
