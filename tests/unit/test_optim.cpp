// AdamW (decay masks, update rule, step count), gradient clipping and learning-rate schedules.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "model/transformer.hpp"
#include "train/optimizer.hpp"
#include "train/schedule.hpp"
#include "train/weight_copies.hpp"

using flowlm::index_t;
using flowlm::train::AdamW;
using flowlm::train::AdamWParams;
using flowlm::train::lr_at;
using flowlm::train::ScheduleParams;

namespace {

ScheduleParams sched(const std::string& kind) {
  ScheduleParams p;
  p.kind = kind;
  p.lr = 1.0;
  p.min_lr = 0.1;
  p.warmup_steps = 10;
  p.max_steps = 110;
  p.decay_fraction = 0.2;
  return p;
}

bool is_norm_or_bias(const flowlm::model::ParamSpec& p) {
  return p.name.find(".bias") != std::string::npos || p.name.find("ln_") != std::string::npos;
}

}  // namespace

TEST(Schedule, Cosine) {
  const auto p = sched("cosine");
  EXPECT_DOUBLE_EQ(lr_at(0, p), 0.1);  // lr / warmup
  EXPECT_DOUBLE_EQ(lr_at(4, p), 0.5);
  EXPECT_DOUBLE_EQ(lr_at(9, p), 1.0);      // end of warmup
  EXPECT_DOUBLE_EQ(lr_at(10, p), 1.0);     // cosine starts at the peak
  EXPECT_NEAR(lr_at(60, p), 0.55, 1e-12);  // midpoint: (lr + min_lr) / 2
  EXPECT_NEAR(lr_at(110, p), 0.1, 1e-12);
  EXPECT_NEAR(lr_at(500, p), 0.1, 1e-12);
  for (std::int64_t s = 10; s < 110; ++s) EXPECT_LE(lr_at(s + 1, p), lr_at(s, p)) << s;
  auto q = p;
  q.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(lr_at(0, q), 1.0);
}

TEST(Schedule, Constant) {
  const auto p = sched("constant");
  EXPECT_DOUBLE_EQ(lr_at(0, p), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(9, p), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(60, p), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(110, p), 1.0);
}

TEST(Schedule, WarmupStableDecay) {
  const auto p = sched("wsd");  // decay over the last 22 of 110 steps: from step 88
  EXPECT_DOUBLE_EQ(lr_at(0, p), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(9, p), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(50, p), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(88, p), 1.0);
  EXPECT_NEAR(lr_at(99, p), 0.55, 1e-12);
  EXPECT_NEAR(lr_at(110, p), 0.1, 1e-12);
  EXPECT_NEAR(lr_at(200, p), 0.1, 1e-12);
  auto q = p;
  q.decay_fraction = 0.0;
  EXPECT_DOUBLE_EQ(lr_at(109, q), 1.0);
}

TEST(Schedule, RejectsBadSettings) {
  auto p = sched("linear");
  try {
    lr_at(0, p);
    FAIL() << "unknown kind accepted";
  } catch (const flowlm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("linear"), std::string::npos) << e.what();
  }
  p = sched("wsd");
  p.decay_fraction = 1.5;
  EXPECT_THROW(lr_at(0, p), flowlm::ConfigError);
  p = sched("cosine");
  p.max_steps = 0;
  EXPECT_THROW(lr_at(0, p), flowlm::ConfigError);
  p = sched("cosine");
  p.min_lr = 2.0;
  EXPECT_THROW(lr_at(0, p), flowlm::ConfigError);
}

TEST(Optim, ClipScale) {
  EXPECT_FLOAT_EQ(flowlm::train::clip_scale(0.5, 1.0), 1.0f);
  EXPECT_FLOAT_EQ(flowlm::train::clip_scale(1.0, 1.0), 1.0f);
  EXPECT_FLOAT_EQ(flowlm::train::clip_scale(4.0, 1.0), 0.25f);
  EXPECT_FLOAT_EQ(flowlm::train::clip_scale(4.0, 0.0), 1.0f);  // disabled
}

// With zero gradients the update is pure weight decay: p *= 1 - lr * wd where decay applies.
TEST(Optim, WeightDecayOnlyOnMatrices) {
  for (bool decay_emb : {false, true}) {
    flowlm::model::Transformer gpt(flowlm::model::gpt2_config(2, 2, 8, 11, 8));
    gpt.init_random(3);
    for (index_t i = 0; i < gpt.num_params(); ++i) gpt.params()[i] += 0.5f;  // biases nonzero too
    const std::vector<float> p0(gpt.params(), gpt.params() + gpt.num_params());
    gpt.zero_grad();
    AdamW opt(gpt, AdamWParams{0.9f, 0.95f, 1e-8f, 0.5f, decay_emb});
    opt.step(gpt.params(), gpt.grads(), 0.1f, 1.0f);
    EXPECT_EQ(opt.step_count(), 1);
    for (const auto& p : gpt.param_table()) {
      const bool decays = p.is_matrix || (p.is_embedding && decay_emb);
      EXPECT_EQ(decays, !is_norm_or_bias(p) && (decay_emb || !p.is_embedding)) << p.name;
      for (index_t i = 0; i < p.numel; ++i) {
        const auto j = static_cast<std::size_t>(p.offset + i);
        const float expect = decays ? p0[j] * (1.0f - 0.1f * 0.5f) : p0[j];
        ASSERT_NEAR(gpt.params()[j], expect, 1e-6f) << p.name << "[" << i << "]";
      }
    }
  }
}

// Three steps against the textbook formula, with a gradient scale.
TEST(Optim, AdamWMatchesFormula) {
  flowlm::model::Transformer gpt(flowlm::model::gpt2_config(1, 2, 8, 11, 8));
  gpt.init_random(9);
  const index_t n = gpt.num_params();
  std::vector<double> p(gpt.params(), gpt.params() + n), m(n, 0.0), v(n, 0.0);
  const AdamWParams hp{0.8f, 0.9f, 1e-6f, 0.05f, false};
  AdamW opt(gpt, hp);
  std::vector<bool> decay(n, false);
  for (const auto& s : gpt.param_table())
    for (index_t i = 0; i < s.numel; ++i) decay[s.offset + i] = s.is_matrix;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> g(n);
  for (int step = 1; step <= 3; ++step) {
    for (auto& x : g) x = nd(rng);
    opt.step(gpt.params(), g.data(), 0.01f, 0.5f);
    for (index_t i = 0; i < n; ++i) {
      const double gi = 0.5 * g[i];
      m[i] = hp.beta1 * m[i] + (1 - hp.beta1) * gi;
      v[i] = hp.beta2 * v[i] + (1 - hp.beta2) * gi * gi;
      const double mh = m[i] / (1 - std::pow(double{hp.beta1}, step));
      const double vh = v[i] / (1 - std::pow(double{hp.beta2}, step));
      p[i] -= 0.01 * (mh / (std::sqrt(vh) + hp.eps) + (decay[i] ? hp.weight_decay : 0.0) * p[i]);
    }
  }
  EXPECT_EQ(opt.step_count(), 3);
  for (index_t i = 0; i < n; ++i) ASSERT_NEAR(gpt.params()[i], p[i], 1e-5) << i;
  for (index_t i = 0; i < n; ++i) ASSERT_NEAR(opt.m()[i], m[i], 1e-5) << i;
  opt.set_step_count(100);
  EXPECT_EQ(opt.step_count(), 100);
}

// ZeRO-1 slices: whole rows of every tensor, covering the buffer in order, about 1/ranks each.
TEST(Optim, ZeroSlicesCutTensorsAtRowBoundaries) {
  const auto table = flowlm::model::make_param_table(flowlm::model::gpt2_config(2, 2, 16, 50, 16));
  const index_t total = table.back().offset + table.back().numel;
  for (const int ranks : {1, 2, 3, 4, 7}) {
    const auto b = flowlm::train::zero_slices(table, ranks);
    ASSERT_EQ(b.size(), static_cast<std::size_t>(ranks) + 1);
    EXPECT_EQ(b.front(), 0);
    EXPECT_EQ(b.back(), total);
    index_t largest_row = 0;
    for (const auto& p : table)
      largest_row = std::max(largest_row, p.numel / std::max<index_t>(1, p.shape[0]));
    for (int r = 0; r < ranks; ++r) {
      ASSERT_LE(b[r], b[r + 1]);
      EXPECT_NEAR(static_cast<double>(b[r + 1] - b[r]), static_cast<double>(total) / ranks,
                  static_cast<double>(largest_row))
          << ranks << " ranks, slice " << r;
      index_t rows_seen = 0;
      for (const auto& p : table) {
        const auto rows = flowlm::train::rows_in_slice(p, b[r], b[r + 1]);  // throws if a row is cut
        rows_seen += rows.count * (p.numel / std::max<index_t>(1, p.shape[0]));
      }
      EXPECT_EQ(rows_seen, b[r + 1] - b[r]);
    }
  }
  EXPECT_THROW(flowlm::train::rows_in_slice(table[0], 0, 3), flowlm::Error);  // inside wte's first row
}

// Optimizers over the slices of a buffer together take exactly the whole buffer's step.
TEST(Optim, SlicedAdamWEqualsTheWholeBuffersStep) {
  flowlm::model::Transformer gpt(flowlm::model::gpt2_config(1, 2, 8, 11, 8));
  gpt.init_random(4);
  const index_t n = gpt.num_params();
  std::vector<float> whole(gpt.params(), gpt.params() + n), parts = whole, g(n);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const auto b = flowlm::train::zero_slices(gpt.param_table(), 3);
  AdamW full(gpt, AdamWParams{});
  std::vector<AdamW> sliced;
  sliced.reserve(3);
  for (int r = 0; r < 3; ++r)
    sliced.emplace_back(gpt.param_table(), AdamWParams{}, gpt.backend(), b[r], b[r + 1]);
  for (int step = 0; step < 3; ++step) {
    for (auto& x : g) x = nd(rng);
    full.step(whole.data(), g.data(), 0.01f, 0.7f);
    for (auto& o : sliced) o.step(parts.data(), g.data(), 0.01f, 0.7f);
  }
  for (index_t i = 0; i < n; ++i) ASSERT_EQ(parts[i], whole[i]) << i;
  for (int r = 0; r < 3; ++r) {
    ASSERT_EQ(sliced[r].slice_begin(), b[r]);
    for (index_t i = b[r]; i < b[r + 1]; ++i) {
      ASSERT_EQ(sliced[r].m()[i - b[r]], full.m()[i]) << i;
      ASSERT_EQ(sliced[r].v()[i - b[r]], full.v()[i]) << i;
    }
  }
  EXPECT_THROW(AdamW(gpt.param_table(), AdamWParams{}, gpt.backend(), 5, n + 1), flowlm::Error);
}

TEST(Optim, RejectsGappedTable) {
  auto table = flowlm::model::make_param_table(flowlm::model::gpt2_config(1, 2, 8, 11, 8));
  table[3].offset += 1;
  const auto backend = flowlm::kernels::make_backend("reference");
  EXPECT_THROW(AdamW(table, AdamWParams{}, *backend), flowlm::Error);
}

// L2-to-init adds 2 lambda (theta - theta0) / P to the gradients and returns lambda |theta - theta0|^2 / P;
// the EMA follows ema = d ema + (1 - d) theta from the weights it started with.
TEST(WeightCopies, L2ToInitGradientAndEmaUpdate) {
  flowlm::model::Transformer gpt(flowlm::model::gpt2_config(1, 2, 8, 11, 8));
  gpt.init_random(5);
  const index_t n = gpt.num_params();
  const std::vector<float> theta0(gpt.params(), gpt.params() + n);
  const double lambda = 0.7;
  flowlm::train::L2ToInit l2(gpt, lambda);
  flowlm::train::WeightEma ema(gpt, 0.9);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (index_t i = 0; i < n; ++i) gpt.params()[i] += nd(rng);
  gpt.zero_grad();
  for (index_t i = 0; i < n; ++i) gpt.grads()[i] = 1.0f;
  const double penalty = l2.add_gradient(gpt);
  double sq = 0;
  for (index_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(gpt.params()[i]) - theta0[i];
    sq += d * d;
    ASSERT_NEAR(gpt.grads()[i], 1.0 + 2.0 * lambda * d / static_cast<double>(n), 1e-6) << i;
  }
  EXPECT_NEAR(penalty, lambda * sq / static_cast<double>(n), 1e-9 * penalty);
  EXPECT_GT(penalty, 0.0);
  ema.update(gpt);
  for (index_t i = 0; i < n; ++i)
    ASSERT_NEAR(ema.host_data()[i], 0.9 * theta0[i] + 0.1 * gpt.params()[i], 1e-6) << i;
}

// L1-to-init adds lambda sign(theta - theta0) / P (0 where unchanged) and returns lambda sum |theta - theta0|
// / P.
TEST(WeightCopies, L1ToInitSubgradient) {
  flowlm::model::Transformer gpt(flowlm::model::gpt2_config(1, 2, 8, 11, 8));
  gpt.init_random(6);
  const index_t n = gpt.num_params();
  const std::vector<float> theta0(gpt.params(), gpt.params() + n);
  const double lambda = 0.3;
  flowlm::train::L1ToInit l1(gpt, lambda);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (index_t i = 0; i < n; i += 2) gpt.params()[i] += nd(rng);  // odd entries stay at theta0
  gpt.zero_grad();
  const double penalty = l1.add_gradient(gpt);
  double abs_sum = 0;
  for (index_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(gpt.params()[i]) - theta0[i];
    abs_sum += std::fabs(d);
    const double sign = d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0);
    ASSERT_NEAR(gpt.grads()[i], lambda * sign / static_cast<double>(n), 1e-9) << i;
  }
  EXPECT_NEAR(penalty, lambda * abs_sum / static_cast<double>(n), 1e-9 * penalty);
  EXPECT_GT(penalty, 0.0);
}
