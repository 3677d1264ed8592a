// Summary statistics for paired experiments (tests and the demo report effects this way).
#pragma once

#include <cmath>
#include <vector>

namespace flowlm {

/// \brief Mean and standard error of the mean.
struct MeanSe {
  double mean = 0, se = 0;
};

/// \brief Mean of x and its standard error sd / sqrt(n) (se = 0 for fewer than two values).
inline MeanSe mean_se(const std::vector<double>& x) {
  MeanSe r;
  if (x.empty()) return r;
  for (const double v : x) r.mean += v / static_cast<double>(x.size());
  double ss = 0;
  for (const double v : x) ss += (v - r.mean) * (v - r.mean);
  if (x.size() > 1) r.se = std::sqrt(ss / static_cast<double>(x.size() - 1) / static_cast<double>(x.size()));
  return r;
}

}  // namespace flowlm
