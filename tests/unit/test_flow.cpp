// FLOW's tau and weights (the end-to-end experiment is tests/mpi/test_flow.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/error.hpp"
#include "train/flow.hpp"

using namespace flowlm;

namespace {

TEST(FlowWeights, QuantileMatchesNumpyLinear) {
  EXPECT_DOUBLE_EQ(train::quantile({3, 1, 2}, 0.5), 2.0);
  EXPECT_DOUBLE_EQ(train::quantile({4, 1, 3, 2}, 0.5), 2.5);
  EXPECT_DOUBLE_EQ(train::quantile({0, 10}, 0.25), 2.5);
  EXPECT_DOUBLE_EQ(train::quantile({5, 7, 9}, 1.0), 9.0);
  EXPECT_THROW(train::quantile({}, 0.5), DataError);
}

TEST(FlowWeights, ExpOfMinusLossOverTau) {
  const std::vector<double> losses = {0.5, 1.0, 2.0, 4.0};
  config::TauSpec median;
  const double tau = train::resolve_tau(median, losses);
  EXPECT_DOUBLE_EQ(tau, 1.5);
  double mean = 0;
  const auto raw = train::flow_weights(losses, tau, "none", &mean);
  for (std::size_t i = 0; i < losses.size(); ++i) EXPECT_DOUBLE_EQ(raw[i], std::exp(-losses[i] / tau));
  const auto norm = train::flow_weights(losses, tau, "mean");
  double s = 0;
  for (std::size_t i = 0; i < losses.size(); ++i) {
    EXPECT_NEAR(norm[i], raw[i] / mean, 1e-15);
    s += norm[i];
  }
  EXPECT_NEAR(s / 4, 1.0, 1e-12);
  EXPECT_GT(norm[0], norm[3]);  // easy samples weigh more
  EXPECT_DOUBLE_EQ(train::resolve_tau({config::TauSpec::Kind::value, 0.7}, losses), 0.7);
  EXPECT_DOUBLE_EQ(train::resolve_tau({config::TauSpec::Kind::quantile, 1.0}, losses), 4.0);
  EXPECT_THROW(train::resolve_tau(median, {0.0, 0.0}), DataError);
  EXPECT_THROW(train::flow_weights(losses, tau, "sum"), ConfigError);
}

}  // namespace
