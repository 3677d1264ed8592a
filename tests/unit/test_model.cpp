// GPT-2 model: parameter table, init, forward modes, whole-model gradients, masking, overfit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "kernels/kernels.hpp"
#include "model/transformer.hpp"
#include "support/testing.hpp"

using flowlm::index_t;
using flowlm::model::ModelConfig;
using flowlm::model::ParamSpec;
using flowlm::model::Transformer;
using GPT = Transformer;
using GPTConfig = ModelConfig;

namespace {

using flowlm::testing::random_tokens;

GPTConfig tiny_config() { return flowlm::model::gpt2_config(2, 2, 8, 11, 8); }  // L, NH, C, V, block_size

double mean_of(const float* x, index_t n) {
  double s = 0;
  for (index_t i = 0; i < n; ++i) s += x[i];
  return s / static_cast<double>(n);
}

double std_of(const float* x, index_t n) {
  const double m = mean_of(x, n);
  double s = 0;
  for (index_t i = 0; i < n; ++i) s += (x[i] - m) * (x[i] - m);
  return std::sqrt(s / static_cast<double>(n));
}

// Large random parameters (not the 0.02 init) so that every gradient is well above float noise.
void randomize_params(GPT& gpt, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  for (const auto& p : gpt.param_table()) {
    const bool ln_weight =
        p.name.find("ln_") != std::string::npos && p.name.find("weight") != std::string::npos;
    float* x = gpt.params() + p.offset;
    for (index_t i = 0; i < p.numel; ++i) x[i] = (ln_weight ? 1.0f : 0.0f) + u(rng);
  }
}

// sum_n w[n] * loss[n] in double, recomputed by a fresh forward.
double weighted_loss(GPT& gpt, const std::vector<std::int32_t>& tok, const std::vector<std::int32_t>& tgt,
                     const float* mask, const std::vector<float>& w, index_t B, index_t T) {
  gpt.forward(tok.data(), tgt.data(), mask, B, T);
  const float* l = gpt.token_losses();
  double s = 0;
  for (index_t i = 0; i < B * T; ++i) s += static_cast<double>(w[i]) * l[i];
  return s;
}

}  // namespace

TEST(Model, ParamTableOfGpt2Small) {
  const GPTConfig cfg = flowlm::model::gpt2_config(12, 12, 768, 50257, 1024);
  EXPECT_EQ(flowlm::model::count_params(cfg), 124439808);
  const auto t = flowlm::model::make_param_table(cfg);
  ASSERT_EQ(t.size(), 2u + 12u * 12u + 2u);
  EXPECT_EQ(t[0].name, "transformer.wte.weight");
  EXPECT_EQ(t[0].shape, (flowlm::Shape{50257, 768}));
  EXPECT_TRUE(t[0].is_embedding);
  EXPECT_FALSE(t[0].is_matrix);
  EXPECT_EQ(t[1].name, "transformer.wpe.weight");
  EXPECT_EQ(t[1].shape, (flowlm::Shape{1024, 768}));
  std::set<std::string> names;
  index_t end = 0;
  for (const auto& p : t) {
    EXPECT_TRUE(names.insert(p.name).second) << "duplicate " << p.name;
    EXPECT_EQ(p.offset, end) << p.name;
    EXPECT_EQ(p.numel, flowlm::shape_numel(p.shape)) << p.name;
    EXPECT_EQ(p.is_matrix, p.shape.size() == 2 && !p.is_embedding) << p.name;
    end += p.numel;
  }
  auto find = [&](const std::string& n) -> const ParamSpec& {
    for (const auto& p : t)
      if (p.name == n) return p;
    ADD_FAILURE() << "missing " << n;
    return t[0];
  };
  EXPECT_EQ(find("transformer.h.0.ln_1.weight").shape, (flowlm::Shape{768}));
  EXPECT_EQ(find("transformer.h.3.attn.c_attn.weight").shape, (flowlm::Shape{768, 2304}));
  EXPECT_EQ(find("transformer.h.3.attn.c_attn.bias").shape, (flowlm::Shape{2304}));
  EXPECT_EQ(find("transformer.h.5.attn.c_proj.weight").shape, (flowlm::Shape{768, 768}));
  EXPECT_EQ(find("transformer.h.11.mlp.c_fc.weight").shape, (flowlm::Shape{768, 3072}));
  EXPECT_EQ(find("transformer.h.11.mlp.c_fc.bias").shape, (flowlm::Shape{3072}));
  EXPECT_EQ(find("transformer.h.11.mlp.c_proj.weight").shape, (flowlm::Shape{3072, 768}));
  EXPECT_EQ(find("transformer.h.11.ln_2.bias").shape, (flowlm::Shape{768}));
  EXPECT_EQ(t.back().name, "transformer.ln_f.bias");
}

TEST(Model, RejectsBadConfigAndUnknownNames) {
  EXPECT_THROW(GPT(flowlm::model::gpt2_config(0, 2, 8, 11, 8)), flowlm::ConfigError);
  EXPECT_THROW(GPT(flowlm::model::gpt2_config(2, 3, 8, 11, 8)), flowlm::ConfigError);
  EXPECT_THROW(GPT(flowlm::model::gpt2_config(2, 2, 8, 0, 8)), flowlm::ConfigError);
  try {
    GPT(flowlm::model::gpt2_config(2, 3, 8, 11, 8));
  } catch (const flowlm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("n_head"), std::string::npos) << e.what();
  }
  GPT gpt(tiny_config());
  EXPECT_EQ(gpt.param("transformer.h.1.mlp.c_fc.bias") - gpt.params(),
            gpt.param_spec("transformer.h.1.mlp.c_fc.bias").offset);
  try {
    gpt.param("transformer.h.2.ln_1.weight");  // only 2 layers
    FAIL() << "no error for an unknown name";
  } catch (const flowlm::Error& e) {
    EXPECT_NE(std::string(e.what()).find("transformer.h.2.ln_1.weight"), std::string::npos) << e.what();
  }
}

TEST(Model, InitStatistics) {
  GPT gpt(flowlm::model::gpt2_config(4, 4, 96, 300, 64));
  gpt.init_random(1234);
  const auto& qkv = gpt.param_spec("transformer.h.1.attn.c_attn.weight");
  EXPECT_NEAR(std_of(gpt.params() + qkv.offset, qkv.numel), 0.02, 0.001);
  EXPECT_NEAR(mean_of(gpt.params() + qkv.offset, qkv.numel), 0.0, 0.001);
  const auto& wte = gpt.param_spec("transformer.wte.weight");
  EXPECT_NEAR(std_of(gpt.params() + wte.offset, wte.numel), 0.02, 0.001);
  const double proj_std = 0.02 / std::sqrt(2.0 * 4);
  for (const char* n : {"transformer.h.2.attn.c_proj.weight", "transformer.h.2.mlp.c_proj.weight"}) {
    const auto& p = gpt.param_spec(n);
    EXPECT_NEAR(std_of(gpt.params() + p.offset, p.numel), proj_std, 0.1 * proj_std) << n;
  }
  for (const auto& p : gpt.param_table()) {
    const float* x = gpt.params() + p.offset;
    const bool bias = p.name.size() > 5 && p.name.substr(p.name.size() - 5) == ".bias";
    if (p.name.find("ln_") != std::string::npos && !bias) {
      for (index_t i = 0; i < p.numel; ++i) ASSERT_EQ(x[i], 1.0f) << p.name;
    } else if (bias) {
      for (index_t i = 0; i < p.numel; ++i) ASSERT_EQ(x[i], 0.0f) << p.name;
    }
  }
  // Deterministic per seed, different across seeds.
  GPT again(flowlm::model::gpt2_config(4, 4, 96, 300, 64));
  again.init_random(1234);
  EXPECT_TRUE(std::equal(gpt.params(), gpt.params() + gpt.num_params(), again.params()));
  again.init_random(1235);
  EXPECT_NE(again.params()[qkv.offset], gpt.params()[qkv.offset]);
}

TEST(Model, LossAtInitIsLogVocab) {
  const GPTConfig cfg = flowlm::model::gpt2_config(2, 4, 32, 97, 16);
  GPT gpt(cfg);
  gpt.init_random(7);
  const index_t B = 4, T = 16;
  const auto tok = random_tokens(B * T, cfg.vocab_size, 1);
  const auto tgt = random_tokens(B * T, cfg.vocab_size, 2);
  const float loss = gpt.forward(tok.data(), tgt.data(), nullptr, B, T);
  EXPECT_NEAR(loss, std::log(97.0), 0.1);
  EXPECT_EQ(gpt.counted_tokens(), B * T);
  EXPECT_NEAR(mean_of(gpt.token_losses(), B * T), loss, 1e-5);
}

TEST(Model, InferenceModeMatchesTraining) {
  GPT gpt(tiny_config());
  randomize_params(gpt, 3);
  const index_t B = 2, T = 5, V = 11;
  const auto tok = random_tokens(B * T, V, 4);
  const auto tgt = random_tokens(B * T, V, 5);
  const float lt = gpt.forward(tok.data(), tgt.data(), nullptr, B, T, true);
  const std::vector<float> losses(gpt.token_losses(), gpt.token_losses() + B * T);
  const std::vector<float> logits(gpt.logits(), gpt.logits() + B * T * V);
  const float li = gpt.forward(tok.data(), tgt.data(), nullptr, B, T, false);
  EXPECT_FLOAT_EQ(lt, li);
  for (index_t i = 0; i < B * T; ++i) EXPECT_NEAR(gpt.token_losses()[i], losses[i], 1e-5f) << i;
  for (index_t i = 0; i < B * T * V; ++i) ASSERT_NEAR(gpt.logits()[i], logits[i], 1e-5f) << i;
  EXPECT_THROW(gpt.backward(), flowlm::Error);  // inference keeps nothing for backward
  // Logits only, and a shorter T reusing the buffers.
  EXPECT_EQ(gpt.forward(tok.data(), nullptr, nullptr, 1, 3, false), 0.0f);
  for (index_t i = 0; i < 3 * V; ++i) ASSERT_NEAR(gpt.logits()[i], logits[i], 1e-5f) << i;  // causal
}

TEST(Model, RejectsBadBatches) {
  GPT gpt(tiny_config());
  gpt.init_random(1);
  EXPECT_THROW(gpt.backward(), flowlm::Error);  // no forward yet
  std::vector<std::int32_t> tok(18, 1), tgt(18, 2);
  EXPECT_THROW(gpt.forward(tok.data(), tgt.data(), nullptr, 2, 9), flowlm::DataError);  // T > block_size
  tok[3] = 11;
  EXPECT_THROW(gpt.forward(tok.data(), tgt.data(), nullptr, 2, 5), flowlm::DataError);
  tok[3] = 1;
  tgt[4] = -1;
  EXPECT_THROW(gpt.forward(tok.data(), tgt.data(), nullptr, 2, 5), flowlm::DataError);
  tgt[4] = 2;
  gpt.forward(tok.data(), tgt.data(), nullptr, 2, 5);
  gpt.backward();
  EXPECT_THROW(gpt.backward(), flowlm::Error);  // backward consumed the logits
}

// Whole-model finite differences. Tolerance: central differences in float32 with h = 1e-2 on a
// loss of O(1) carry ~1e-6 / 1e-2 = 1e-4 rounding noise plus O(h^2) = 1e-4 truncation error; the
// parameters are O(0.5) so typical gradients are O(1e-2 .. 1). |fd - analytic| <= 2e-3 + 2e-2 * |g|
// passes correct code comfortably and fails any missing term (which is O(|g|)).
TEST(Model, GradientMatchesFiniteDifferences) {
  GPT gpt(tiny_config());
  randomize_params(gpt, 11);
  const index_t B = 2, T = 5, V = 11, N = B * T;
  const auto tok = random_tokens(N, V, 12);
  const auto tgt = random_tokens(N, V, 13);
  std::vector<float> w(static_cast<std::size_t>(N));
  std::mt19937 rng(14);
  std::uniform_real_distribution<float> u(0.2f, 1.0f);
  for (auto& x : w) x = u(rng);  // per-token weights exercise the dlosses path

  gpt.zero_grad();
  gpt.forward(tok.data(), tgt.data(), nullptr, B, T);
  gpt.backward(w.data());
  const std::vector<float> g(gpt.grads(), gpt.grads() + gpt.num_params());

  const float h = 1e-2f;
  int checked = 0;
  for (const auto& p : gpt.param_table()) {
    std::vector<index_t> picks = {0, p.numel - 1};
    std::uniform_int_distribution<index_t> pick(0, p.numel - 1);
    for (int k = 0; k < 4; ++k) picks.push_back(pick(rng));
    for (index_t i : picks) {
      float* x = gpt.params() + p.offset + i;
      const float x0 = *x;
      *x = x0 + h;
      const double lp = weighted_loss(gpt, tok, tgt, nullptr, w, B, T);
      *x = x0 - h;
      const double lm = weighted_loss(gpt, tok, tgt, nullptr, w, B, T);
      *x = x0;
      const double fd = (lp - lm) / (2.0 * h);
      const double an = g[static_cast<std::size_t>(p.offset + i)];
      EXPECT_NEAR(an, fd, 2e-3 + 2e-2 * std::fabs(fd)) << p.name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(gpt.param_table().size()) * 6);

  // One random direction through all parameters at once: g . d vs the directional difference.
  std::vector<float> d(static_cast<std::size_t>(gpt.num_params()));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  double gd = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    d[i] = nd(rng);
    gd += static_cast<double>(d[i]) * g[i];
  }
  const std::vector<float> p0(gpt.params(), gpt.params() + gpt.num_params());
  const float hd = 2e-3f;
  for (std::size_t i = 0; i < d.size(); ++i) gpt.params()[i] = p0[i] + hd * d[i];
  const double lp = weighted_loss(gpt, tok, tgt, nullptr, w, B, T);
  for (std::size_t i = 0; i < d.size(); ++i) gpt.params()[i] = p0[i] - hd * d[i];
  const double lm = weighted_loss(gpt, tok, tgt, nullptr, w, B, T);
  EXPECT_NEAR(gd, (lp - lm) / (2.0 * hd), 0.03 * std::fabs(gd) + 1e-2);
}

TEST(Model, MaskedTokensContributeNoGradient) {
  GPT gpt(tiny_config());
  randomize_params(gpt, 21);
  const index_t B = 2, T = 5, V = 11, N = B * T;
  const auto tok = random_tokens(N, V, 22);
  auto tgt = random_tokens(N, V, 23);
  std::vector<float> mask(static_cast<std::size_t>(N), 1.0f);
  for (index_t i : {0, 1, 2, 5, 9}) mask[static_cast<std::size_t>(i)] = 0.0f;

  gpt.zero_grad();
  const float loss = gpt.forward(tok.data(), tgt.data(), mask.data(), B, T);
  EXPECT_EQ(gpt.counted_tokens(), 5);
  double s = 0;
  for (index_t i = 0; i < N; ++i) {
    if (mask[static_cast<std::size_t>(i)] == 0.0f) {
      EXPECT_EQ(gpt.token_losses()[i], 0.0f);
    }
    s += gpt.token_losses()[i];
  }
  EXPECT_NEAR(loss, s / 5.0, 1e-5);
  gpt.backward();
  const std::vector<float> g1(gpt.grads(), gpt.grads() + gpt.num_params());

  // Other targets at masked positions change nothing.
  for (std::size_t i : {0u, 1u, 2u, 5u, 9u}) tgt[i] = (tgt[i] + 3) % 11;
  gpt.zero_grad();
  EXPECT_FLOAT_EQ(gpt.forward(tok.data(), tgt.data(), mask.data(), B, T), loss);
  gpt.backward();
  for (index_t i = 0; i < gpt.num_params(); ++i) ASSERT_EQ(gpt.grads()[i], g1[i]) << i;

  // And the masked mean equals an unmasked forward weighted by mask / count.
  std::vector<float> w(mask);
  for (auto& x : w) x /= 5.0f;
  gpt.zero_grad();
  gpt.forward(tok.data(), tgt.data(), nullptr, B, T);
  gpt.backward(w.data());
  double gnorm = 0;
  for (index_t i = 0; i < gpt.num_params(); ++i) {
    ASSERT_NEAR(gpt.grads()[i], g1[i], 1e-5f + 1e-4f * std::fabs(g1[i])) << i;
    gnorm += g1[i] * g1[i];
  }
  EXPECT_GT(gnorm, 1e-6);  // the comparison is not vacuous
}

TEST(Model, AdamWOverfitsOneBatch) {
  const GPTConfig cfg = flowlm::model::gpt2_config(2, 2, 32, 23, 16);
  GPT gpt(cfg);
  gpt.init_random(5);
  const index_t B = 2, T = 16, N = B * T;
  const auto tok = random_tokens(N, cfg.vocab_size, 31);
  const auto tgt = random_tokens(N, cfg.vocab_size, 32);
  std::vector<float> m(static_cast<std::size_t>(gpt.num_params())), v(m.size());
  float first = 0, last = 0;
  for (long step = 1; step <= 30; ++step) {
    gpt.zero_grad();
    last = gpt.forward(tok.data(), tgt.data(), nullptr, B, T);
    if (step == 1) first = last;
    gpt.backward();
    ASSERT_TRUE(flowlm::kernels::all_finite(gpt.grads(), gpt.num_params()));
    flowlm::kernels::adamw_update(gpt.params(), m.data(), v.data(), gpt.grads(), gpt.num_params(), 1e-2f,
                                  0.9f, 0.95f, 1e-8f, 0.0f, 1.0f, step);
  }
  EXPECT_NEAR(first, std::log(23.0), 0.15);
  EXPECT_LT(last, 0.5f * first) << "first " << first << " last " << last;
}
