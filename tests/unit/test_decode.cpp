// Generation with a key/value cache (model/decode.hpp) against decoding without one, for every
// family: the decoder's logits at every position equal a full forward's, greedy tokens equal
// greedy_answers (which reruns the whole sequence per token) whatever the batching, and the
// sampling rules (temperature, top-k, top-p, per-row seeded streams) do what they say.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "data/sampleset.hpp"
#include "model/decode.hpp"
#include "model/transformer.hpp"
#include "support/families.hpp"
#include "support/testing.hpp"
#include "train/evaluate.hpp"

namespace {

using flowlm::index_t;
using flowlm::model::Decoder;
using flowlm::model::GenerateOptions;
using flowlm::model::Sampling;
using flowlm::model::Transformer;
using flowlm::testing::contains;
using flowlm::testing::thrown;
using Tokens = std::vector<std::int32_t>;

// Weights of a random init scaled up, so that logits differ clearly between tokens and positions.
std::unique_ptr<Transformer> model_of(const std::string& family, const std::string& backend = "host") {
  auto m = std::make_unique<Transformer>(flowlm::testing::families().at(family), backend);
  m->init_random(11);
  float* p = m->params();
  for (const auto& spec : m->param_table())
    if (spec.shape.size() == 2)
      for (index_t i = 0; i < spec.numel; ++i) p[spec.offset + i] *= 6.0f;
  return m;
}

std::vector<Tokens> prompts_for(index_t V) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<std::int32_t> tok(1, static_cast<std::int32_t>(V) - 1);
  std::vector<Tokens> out;
  for (const index_t len : {3, 7, 1, 5, 2}) {
    Tokens p(static_cast<std::size_t>(len));
    for (auto& t : p) t = tok(rng);
    out.push_back(p);
  }
  return out;
}

class Families : public ::testing::TestWithParam<std::string> {};

TEST_P(Families, CachedLogitsEqualFullForwardAtEveryPosition) {
  auto m = model_of(GetParam());
  const index_t V = m->config().vocab_size, S = m->config().block_size;
  const auto prompts = prompts_for(V);
  // Rows of different lengths in one cache, then 8 steps each, fed with fixed tokens.
  const std::vector<Tokens> batch(prompts.begin(), prompts.begin() + 3);
  Decoder dec(*m, 3, S);
  std::vector<Tokens> seq = batch;
  std::vector<std::vector<float>> got(3);
  auto keep = [&](const std::vector<float>& logits) {
    for (std::size_t b = 0; b < 3; ++b)
      got[b].insert(got[b].end(), logits.begin() + static_cast<index_t>(b) * V,
                    logits.begin() + static_cast<index_t>(b + 1) * V);
  };
  keep(dec.prefill(batch));
  for (int step = 0; step < 8; ++step) {
    Tokens feed;
    for (std::size_t b = 0; b < 3; ++b) {
      feed.push_back(static_cast<std::int32_t>((7 * step + 3 * b + 1) % V));
      seq[b].push_back(feed.back());
    }
    keep(dec.step(feed));
  }
  for (std::size_t b = 0; b < 3; ++b) {
    const auto T = static_cast<index_t>(seq[b].size()) - 1;  // the last fed token's logits are the last kept
    m->forward(seq[b].data(), nullptr, nullptr, 1, T + 1, false);
    const float* full = m->logits();
    const index_t first = static_cast<index_t>(batch[b].size()) - 1;
    double worst = 0, scale = 0;
    for (index_t t = first; t <= T; ++t)
      for (index_t v = 0; v < V; ++v) {
        const double want = full[t * V + v], have = got[b][static_cast<std::size_t>((t - first) * V + v)];
        worst = std::max(worst, std::fabs(want - have));
        scale = std::max(scale, std::fabs(want));
      }
    EXPECT_LE(worst, 2e-5 * std::max(1.0, scale)) << GetParam() << " row " << b;
    EXPECT_GT(scale, 0.1) << "degenerate test model";
  }
}

TEST_P(Families, GreedyTokensEqualGreedyAnswersWithoutCache) {
  auto m = model_of(GetParam());
  const index_t V = m->config().vocab_size;
  const auto prompts = prompts_for(V);
  const std::int32_t eot = 0;
  // greedy_answers decodes samples from their prompts (tokens before answer_start).
  flowlm::data::SampleSet set;
  set.vocab_size = V;
  std::vector<index_t> ids, max_new;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    Tokens sample = prompts[i];
    sample.push_back(eot);  // an answer of one token; greedy_answers only reads the prompt
    set.append(sample, static_cast<std::int64_t>(prompts[i].size()));
    ids.push_back(static_cast<index_t>(i));
    max_new.push_back(8);
  }
  const auto want =
      flowlm::train::greedy_answers(*m, set, ids, max_new, eot, flowlm::train::Decoding::full_rerun);
  // greedy_answers' own cached path (its default) makes the same answers, EOTs kept.
  EXPECT_EQ(flowlm::train::greedy_answers(*m, set, ids, max_new, eot), want);
  GenerateOptions opt;
  opt.max_new_tokens = 8;
  opt.eot = eot;
  for (const index_t batch : {index_t{1}, index_t{2}, index_t{5}}) {
    const auto got = flowlm::model::generate(*m, prompts, opt, batch);
    ASSERT_EQ(got.size(), want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      Tokens g = got[i];
      if (static_cast<index_t>(g.size()) < 8) g.push_back(eot);  // greedy_answers keeps the EOT
      EXPECT_EQ(g, want[i]) << GetParam() << " prompt " << i << " batch " << batch;
    }
  }
  // And the uncached reference of model/decode.hpp makes the same decisions.
  const auto ref = flowlm::model::generate_uncached(*m, prompts, opt);
  EXPECT_EQ(ref, flowlm::model::generate(*m, prompts, opt, 3));
}

TEST_P(Families, SampledTokensDoNotDependOnTheBatch) {
  auto m = model_of(GetParam());
  const auto prompts = prompts_for(m->config().vocab_size);
  GenerateOptions opt;
  opt.max_new_tokens = 8;
  opt.sampling = Sampling{1.0, 5, 0.9, 42};
  const auto one = flowlm::model::generate(*m, prompts, opt, 1);
  EXPECT_EQ(one, flowlm::model::generate(*m, prompts, opt, 4));
  EXPECT_EQ(one, flowlm::model::generate_uncached(*m, prompts, opt));
  opt.sampling.seed = 43;
  EXPECT_NE(one, flowlm::model::generate(*m, prompts, opt, 4)) << "the seed must matter";
}

INSTANTIATE_TEST_SUITE_P(Decode, Families, ::testing::Values("gpt2", "llama", "qwen2", "mistral", "gemma2"),
                         [](const auto& p) { return p.param; });

TEST(Decode, ReferenceBackendMakesTheSameTokens) {
  for (const std::string family : {"gpt2", "gemma2"}) {
    auto host = model_of(family), ref = model_of(family, "reference");
    const auto prompts = prompts_for(host->config().vocab_size);
    GenerateOptions opt;
    opt.max_new_tokens = 6;
    EXPECT_EQ(flowlm::model::generate(*host, prompts, opt, 5), flowlm::model::generate(*ref, prompts, opt, 5))
        << family;
  }
}

TEST(Decode, StopCallbackEndsARowAfterTheToken) {
  auto m = model_of("llama");
  const auto prompts = prompts_for(m->config().vocab_size);
  GenerateOptions opt;
  opt.max_new_tokens = 8;
  const auto full = flowlm::model::generate(*m, prompts, opt, 5);
  opt.stop = [](std::size_t row, const Tokens& out) { return out.size() >= 2 + row % 3; };
  const auto cut = flowlm::model::generate(*m, prompts, opt, 5);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(cut[i].size(), 2 + i % 3);
    EXPECT_TRUE(std::equal(cut[i].begin(), cut[i].end(), full[i].begin())) << i;
  }
}

TEST(Decode, LearnedPositionsMustFitTheBlock) {
  auto m = model_of("gpt2");  // block_size 16
  GenerateOptions opt;
  opt.max_new_tokens = 11;
  const std::vector<Tokens> prompts{Tokens(7, 3)};  // 7 + 11 - 1 = 17 positions
  const std::string msg = thrown<flowlm::DataError>([&] { flowlm::model::generate(*m, prompts, opt); });
  EXPECT_TRUE(contains(msg, "17 positions") && contains(msg, "block_size 16")) << msg;
  opt.max_new_tokens = 10;  // 16: fits
  EXPECT_EQ(flowlm::model::generate(*m, prompts, opt)[0].size(), 10u);
  EXPECT_THROW(flowlm::model::generate(*m, {Tokens{}}, opt), flowlm::DataError);
}

// The sampling rule on fixed logits: frequencies of 20000 draws against the distribution it
// documents (temperature, then top-k, then top-p), and the degenerate settings equal greedy.
TEST(Sampling, DrawsFollowTemperatureTopKAndTopP) {
  const std::vector<float> logits{1.0f, 3.0f, 2.0f, 0.5f, 2.9f, -1.0f};
  const index_t V = static_cast<index_t>(logits.size());
  auto frequencies = [&](const Sampling& s) {
    std::vector<double> f(logits.size(), 0.0);
    std::uint64_t state = flowlm::model::sampling_stream(s.seed, 0);
    const int n = 20000;
    for (int i = 0; i < n; ++i)
      f[static_cast<std::size_t>(flowlm::model::choose_token(logits.data(), V, s, state))] += 1.0 / n;
    return f;
  };
  auto softmax = [&](double temp, const std::vector<int>& keep) {
    std::vector<double> p(logits.size(), 0.0);
    double z = 0;
    for (const int i : keep) z += std::exp(logits[static_cast<std::size_t>(i)] / temp);
    for (const int i : keep)
      p[static_cast<std::size_t>(i)] = std::exp(logits[static_cast<std::size_t>(i)] / temp) / z;
    return p;
  };
  auto expect_near = [](const std::vector<double>& got, const std::vector<double>& want, const char* what) {
    for (std::size_t i = 0; i < got.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 0.012) << what << " token " << i;  // ~3.5 sigma at n = 20000
  };
  expect_near(frequencies(Sampling{1.0, 0, 1.0, 1}), softmax(1.0, {0, 1, 2, 3, 4, 5}), "temperature 1");
  expect_near(frequencies(Sampling{0.5, 0, 1.0, 2}), softmax(0.5, {0, 1, 2, 3, 4, 5}), "temperature 0.5");
  expect_near(frequencies(Sampling{1.0, 3, 1.0, 3}), softmax(1.0, {1, 4, 2}), "top-k 3");
  // p(1) = 0.38, p(4) = 0.34 at temperature 1: top_p 0.6 keeps the smallest set reaching 0.6, {1, 4}.
  expect_near(frequencies(Sampling{1.0, 0, 0.6, 4}), softmax(1.0, {1, 4}), "top-p 0.6");
  std::uint64_t state = 9;
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(flowlm::model::choose_token(logits.data(), V, Sampling{0.0, 0, 1.0, 1}, state), 1);
    EXPECT_EQ(flowlm::model::choose_token(logits.data(), V, Sampling{2.0, 1, 1.0, 1}, state), 1);
    EXPECT_EQ(flowlm::model::choose_token(logits.data(), V, Sampling{2.0, 0, 1e-6, 1}, state), 1);
  }
}

}  // namespace
