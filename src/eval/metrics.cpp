#include "eval/metrics.hpp"

#include <cmath>
#include <limits>

#include "core/error.hpp"

namespace flowlm::eval {

double standard_error(const std::vector<double>& x) {
  const auto n = static_cast<double>(x.size());
  if (x.size() < 2) return std::numeric_limits<double>::quiet_NaN();
  double mean = 0;
  for (const double v : x) mean += v;
  mean /= n;
  double ss = 0;
  for (const double v : x) ss += (v - mean) * (v - mean);
  return std::sqrt(ss / (n - 1)) / std::sqrt(n);
}

Metric mean_metric(std::string name, const std::vector<double>& x, bool higher_is_better) {
  Metric m;
  m.name = std::move(name);
  m.higher_is_better = higher_is_better;
  double sum = 0;
  for (const double v : x) sum += v;
  m.value = x.empty() ? 0.0 : sum / static_cast<double>(x.size());
  m.stderr_ = standard_error(x);
  m.influence = x;
  return m;
}

Metric ratio_metric(std::string name, const std::vector<double>& num, const std::vector<double>& den,
                    RatioForm form) {
  Metric m;
  m.name = std::move(name);
  m.higher_is_better = false;
  double a = 0, b = 0;
  for (const double v : num) a += v;
  for (const double v : den) b += v;
  const double r = b > 0 ? a / b : 0.0;
  const double g = form == RatioForm::exp ? std::exp(r) : form == RatioForm::per_ln2 ? r / std::log(2.0) : r;
  const double dg = form == RatioForm::exp ? g : form == RatioForm::per_ln2 ? 1.0 / std::log(2.0) : 1.0;
  const double mean_den = num.empty() ? 1.0 : b / static_cast<double>(den.size());
  m.value = g;
  m.influence.resize(num.size());
  for (std::size_t i = 0; i < num.size(); ++i) m.influence[i] = dg * (num[i] - r * den[i]) / mean_den;
  m.stderr_ = standard_error(m.influence);
  return m;
}

Delta paired_delta(const Metric& base, const Metric& tuned) {
  if (base.influence.size() != tuned.influence.size())
    fail<Error>("metric {}: base has {} items, tuned {}; a paired difference needs the same items", base.name,
                base.influence.size(), tuned.influence.size());
  Delta d;
  d.base = base.value;
  d.tuned = tuned.value;
  d.delta = tuned.value - base.value;
  std::vector<double> diff(base.influence.size());
  for (std::size_t i = 0; i < diff.size(); ++i) diff[i] = tuned.influence[i] - base.influence[i];
  d.stderr_ = standard_error(diff);
  return d;
}

}  // namespace flowlm::eval
