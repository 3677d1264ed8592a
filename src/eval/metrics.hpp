// Metrics with lm-eval's standard errors, and paired differences between two models on the same
// items. Every metric carries its per-item influence values psi_i: the metric's standard error is
// sd(psi) / sqrt(n), and the standard error of a difference between two models is that of
// psi_tuned - psi_base (paired over items). For a mean (acc, acc_norm, exact_match) psi_i is the
// item's score, so the error is lm-eval's sample stddev / sqrt(n). For the corpus-level ratios of
// rolling tasks (perplexities, bits per byte) psi is the delta-method linearisation; lm-eval
// bootstraps those instead, so their errors are of the same size but not the same numbers.
#pragma once

#include <string>
#include <vector>

namespace flowlm::eval {

/// \brief One metric of one task on one model.
struct Metric {
  std::string name;
  double value = 0;
  double stderr_ = 0;  ///< NaN with fewer than two items
  bool higher_is_better = true;
  std::vector<double> influence;  ///< per item, in item order
};

/// \brief mean(x) with stderr = sample stddev / sqrt(n).
Metric mean_metric(std::string name, const std::vector<double>& x, bool higher_is_better = true);

/// \brief What a ratio metric does to R = sum(num) / sum(den).
enum class RatioForm { plain, exp, per_ln2 };
/// \brief g(sum(num) / sum(den)) with g = identity (a token-weighted mean loss), exp (perplexity) or
/// x / ln 2 (bits per byte), and its delta-method influence g'(R) (num_i - R den_i) / mean(den).
Metric ratio_metric(std::string name, const std::vector<double>& num, const std::vector<double>& den,
                    RatioForm form);

/// \brief A paired difference tuned - base on the same items.
struct Delta {
  double base = 0, tuned = 0, delta = 0, stderr_ = 0;
};
/// \brief Error (naming the metric) when the two were not computed on the same number of items.
Delta paired_delta(const Metric& base, const Metric& tuned);

/// \brief sd(x) / sqrt(n) with the n - 1 denominator; NaN for n < 2.
double standard_error(const std::vector<double>& x);

}  // namespace flowlm::eval
