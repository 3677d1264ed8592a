// LoRA adapters on every family: the adapted forward equals the merged model's, adapter gradients
// match finite differences, the base stays frozen, PEFT's layout round-trips, bad specs are refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "model/lora.hpp"
#include "model/transformer.hpp"
#include "support/families.hpp"
#include "support/testing.hpp"

using flowlm::index_t;
using flowlm::config::LoraConfig;
using flowlm::model::Transformer;

namespace {

using flowlm::testing::random_tokens;

LoraConfig spec(index_t r, double alpha, std::vector<std::string> targets = {}) {
  LoraConfig c;
  c.r = r;
  c.alpha = alpha;
  c.targets = std::move(targets);
  return c;
}

// Adapters with B != 0 too (PEFT's init has B = 0, which would hide a wrong delta).
void randomize_adapters(Transformer& m, unsigned seed, float amplitude) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-amplitude, amplitude);
  auto* lora = m.lora();
  for (std::size_t i = 0; i < lora->table().size(); ++i) {
    std::vector<float> t(static_cast<std::size_t>(lora->table()[i].numel));
    for (auto& x : t) x = u(rng);
    lora->write(i, t.data());
  }
}

std::vector<float> logits_of(Transformer& m, const std::vector<std::int32_t>& tok, index_t B, index_t T) {
  m.forward(tok.data(), nullptr, nullptr, B, T, false);
  const index_t n = B * T * m.config().vocab_size;
  return std::vector<float>(m.logits(), m.logits() + n);
}

double weighted_loss(Transformer& m, const std::vector<std::int32_t>& tok,
                     const std::vector<std::int32_t>& tgt, const std::vector<float>& w, index_t B,
                     index_t T) {
  m.forward(tok.data(), tgt.data(), nullptr, B, T);
  double s = 0;
  for (index_t i = 0; i < B * T; ++i)
    s += static_cast<double>(w[static_cast<std::size_t>(i)]) * m.token_losses()[i];
  return s;
}

class LoraFamily : public ::testing::TestWithParam<std::string> {};

TEST_P(LoraFamily, ForwardEqualsMergedModel) {
  const auto cfg = flowlm::testing::families().at(GetParam());
  Transformer adapted(cfg), merged(cfg);
  adapted.init_random(3);
  merged.init_random(3);
  adapted.enable_lora(spec(3, 6.0));  // scale 2
  merged.enable_lora(spec(3, 6.0));
  randomize_adapters(adapted, 4, 0.3f);
  randomize_adapters(merged, 4, 0.3f);
  const index_t B = 2, T = 7;
  const auto tok = random_tokens(B * T, cfg.vocab_size, 5);
  Transformer plain(cfg);
  plain.init_random(3);
  const auto base = logits_of(plain, tok, B, T);
  const auto with = logits_of(adapted, tok, B, T);
  merged.merge_lora();
  EXPECT_EQ(merged.lora(), nullptr);
  const auto folded = logits_of(merged, tok, B, T);
  double max_diff = 0, max_delta = 0;
  for (std::size_t i = 0; i < with.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(with[i] - folded[i])));
    max_delta = std::max(max_delta, static_cast<double>(std::fabs(with[i] - base[i])));
  }
  EXPECT_LT(max_diff, 1e-5) << "adapted vs merged logits";
  EXPECT_GT(max_delta, 1e-2) << "the adapters must change the output";
}

TEST_P(LoraFamily, ZeroBStartsAtTheBase) {
  const auto cfg = flowlm::testing::families().at(GetParam());
  Transformer plain(cfg), adapted(cfg);
  plain.init_random(8);
  adapted.init_random(8);
  adapted.enable_lora(spec(4, 0.0));
  adapted.lora()->init_random(9);
  EXPECT_EQ(adapted.lora()->scale(), 1.0f);  // alpha 0 = r
  const index_t B = 1, T = 6;
  const auto tok = random_tokens(B * T, cfg.vocab_size, 10);
  EXPECT_EQ(logits_of(plain, tok, B, T), logits_of(adapted, tok, B, T));
}

// Central differences as in test_model's whole-model check; the adapters are O(0.3) and the
// loss O(1), so |fd - analytic| <= 2e-3 + 2e-2 |g| holds for correct code and fails a missing term.
TEST_P(LoraFamily, AdapterGradientsMatchFiniteDifferences) {
  const auto cfg = flowlm::testing::families().at(GetParam());
  Transformer m(cfg);
  m.init_random(21);
  m.enable_lora(spec(2, 3.0));
  randomize_adapters(m, 22, 0.3f);
  const index_t B = 2, T = 5, N = B * T;
  const auto tok = random_tokens(N, cfg.vocab_size, 23);
  const auto tgt = random_tokens(N, cfg.vocab_size, 24);
  std::vector<float> w(static_cast<std::size_t>(N));
  std::mt19937 rng(25);
  std::uniform_real_distribution<float> u(0.2f, 1.0f);
  for (auto& x : w) x = u(rng);
  const std::vector<float> base(m.params(), m.params() + m.num_params());

  m.zero_grad();
  m.forward(tok.data(), tgt.data(), nullptr, B, T);
  m.backward(w.data());
  EXPECT_THROW(m.grads_view(), flowlm::Error) << "the base has no gradients under LoRA";
  auto* lora = m.lora();
  std::vector<float> g(static_cast<std::size_t>(lora->num_params()));
  m.backend().copy_out(g.data(), g.size() * sizeof(float), lora->grads_view());
  std::vector<float> p0 = lora->host_params();

  const float h = 1e-2f;
  int checked = 0;
  for (const auto& s : lora->table()) {
    std::vector<index_t> picks = {0, s.numel - 1};
    std::uniform_int_distribution<index_t> pick(0, s.numel - 1);
    for (int k = 0; k < 3; ++k) picks.push_back(pick(rng));
    for (index_t i : picks) {
      // Perturb element i of the stored buffer (whatever its layout): the gradient is in the same one.
      const auto at = static_cast<std::size_t>(s.offset + i);
      auto set = [&](float v) {
        std::vector<float> p = p0;
        p[at] = v;
        m.backend().copy_in(lora->params_view(), p.data(), p.size() * sizeof(float));
      };
      set(p0[at] + h);
      const double lp = weighted_loss(m, tok, tgt, w, B, T);
      set(p0[at] - h);
      const double lm = weighted_loss(m, tok, tgt, w, B, T);
      set(p0[at]);
      const double fd = (lp - lm) / (2.0 * h);
      EXPECT_NEAR(g[at], fd, 2e-3 + 2e-2 * std::fabs(fd)) << s.name << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, static_cast<int>(lora->table().size()) * 5);
  EXPECT_EQ(std::vector<float>(m.params(), m.params() + m.num_params()), base) << "the base must not change";
}

TEST_P(LoraFamily, PeftLayoutRoundTrips) {
  const auto cfg = flowlm::testing::families().at(GetParam());
  Transformer m(cfg);
  m.enable_lora(spec(3, 3.0));
  randomize_adapters(m, 31, 1.0f);
  auto* lora = m.lora();
  for (std::size_t i = 0; i < lora->table().size(); ++i) {
    const auto& s = lora->table()[i];
    const std::vector<float> t = lora->read(i);
    ASSERT_EQ(static_cast<index_t>(t.size()), s.numel);
    EXPECT_EQ(s.shape[0] * s.shape[1], s.numel);
    lora->write(i, t.data());
    EXPECT_EQ(lora->read(i), t) << s.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, LoraFamily,
                         ::testing::Values("gpt2", "llama", "qwen2", "mistral", "gemma2"),
                         [](const auto& family) { return family.param; });

TEST(Lora, PeftNamesAndShapes) {
  const auto fam = flowlm::testing::families();
  Transformer gpt2(fam.at("gpt2"));
  gpt2.enable_lora(spec(4, 8.0, {"c_attn"}));
  const auto& t = gpt2.lora()->table();
  ASSERT_EQ(t.size(), 4u);  // 2 layers x (A, B)
  EXPECT_EQ(t[0].name, "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight");
  EXPECT_EQ(t[0].shape, (flowlm::Shape{4, 16}));
  EXPECT_EQ(t[1].name, "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight");
  EXPECT_EQ(t[1].shape, (flowlm::Shape{48, 4}));
  EXPECT_FLOAT_EQ(gpt2.lora()->scale(), 2.0f);

  Transformer llama(fam.at("llama"));
  llama.enable_lora(spec(2, 0.0));
  EXPECT_EQ(llama.lora()->spec().targets, (std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj",
                                                                    "gate_proj", "up_proj", "down_proj"}));
  EXPECT_EQ(llama.lora()->table()[2].name, "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight");
  EXPECT_EQ(llama.lora()->table()[3].shape, (flowlm::Shape{8, 2}));  // k_proj: 2 kv heads x 4
  EXPECT_EQ(llama.num_trainable(), llama.lora()->num_params());
}

TEST(Lora, RejectsBadSpecs) {
  const auto fam = flowlm::testing::families();
  Transformer m(fam.at("llama"));
  EXPECT_THROW(m.enable_lora(spec(0, 0.0)), flowlm::ConfigError);
  try {
    m.enable_lora(spec(2, 0.0, {"c_attn"}));
    FAIL() << "c_attn is no Llama projection";
  } catch (const flowlm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("q_proj"), std::string::npos) << e.what();
  }
  LoraConfig drop = spec(2, 0.0);
  drop.dropout = 0.05;
  EXPECT_THROW(m.enable_lora(drop), flowlm::ConfigError);
  EXPECT_THROW(m.merge_lora(), flowlm::Error);
}

}  // namespace
