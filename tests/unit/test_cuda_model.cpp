// The whole model on the "cuda" backend against the "host" backend, for each model family of
// test_families.cpp: the same parameters give the same per-token losses, the same log-softmax of
// the logits and the same gradients (fp32 on both sides). Compiled into every CUDA build; every test
// skips, saying "no CUDA device visible", on a machine without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/error.hpp"
#include "kernels/backend.hpp"
#include "kernels/cuda/device.hpp"
#include "model/transformer.hpp"
#include "support/families.hpp"
#include "support/testing.hpp"

namespace {

using flowlm::testing::random_tokens;

using flowlm::index_t;
using flowlm::model::ModelConfig;
using flowlm::model::Transformer;
namespace kern = flowlm::kernels;
using Vec = std::vector<float>;
using IVec = std::vector<std::int32_t>;

using flowlm::testing::families;

// max_i |a - b| / max(1e-6, max_i |b|), as test_families.cpp measures host against reference.
double max_rel_diff(const Vec& a, const Vec& b) {
  double scale = 1e-6, worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
    worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return worst / scale;
}

// Reads a view of the model's backend (Transformer's host pointers throw on a device backend).
Vec download(Transformer& m, const kern::TensorView& v) {
  Vec out(static_cast<std::size_t>(v.numel()));
  m.backend().copy_out(out.data(), v.bytes(), v);
  return out;
}

class CudaModel : public ::testing::TestWithParam<std::string> {
 protected:
  static constexpr index_t B = 2, T = 7;

  void SetUp() override {
    if (kern::cuda::device_count() == 0)
      GTEST_SKIP() << "no CUDA device visible (" << kern::cuda::no_device_reason() << ")";
    const ModelConfig cfg = families().at(GetParam());
    host = std::make_unique<Transformer>(cfg, "host");
    gpu = std::make_unique<Transformer>(cfg, "cuda");
    // Weights of O(0.5) (not the tiny init) so that every path carries signal.
    std::mt19937 rng(3);
    std::normal_distribution<float> d(0.0f, 0.5f);
    Vec p(static_cast<std::size_t>(host->num_params()));
    for (float& x : p) x = d(rng);
    for (Transformer* m : {host.get(), gpu.get()}) {
      const kern::TensorView v = m->params_view();
      m->backend().copy_in(v, p.data(), v.bytes());
    }
    V = cfg.vocab_size;
    tokens = random_tokens(B * T, V, 4);
    targets = random_tokens(B * T, V, 5);
  }

  struct Pass {
    float loss;
    Vec losses, grads;
  };
  // forward (training) then backward; dlosses and mask may be null.
  static Pass run(Transformer& m, const IVec& tok, const IVec& tgt, const float* mask, const float* dlosses) {
    m.zero_grad();
    Pass p;
    p.loss = m.forward(tok.data(), tgt.data(), mask, B, T);
    p.losses = download(m, m.token_losses_view());
    m.backward(dlosses);
    p.grads = download(m, m.grads_view());
    return p;
  }

  std::unique_ptr<Transformer> host, gpu;
  index_t V = 0;
  IVec tokens, targets;
};

// Both sides sum in float, so the bounds are twice test_families.cpp's host-against-reference ones.
constexpr double kLossTol = 2e-5, kGradTol = 2e-4;

TEST_P(CudaModel, LossesAndGradientsMatchHost) {
  std::mt19937 rng(6);
  std::uniform_real_distribution<float> u(0.1f, 1.0f);
  Vec w(static_cast<std::size_t>(B * T));
  for (float& x : w) x = u(rng);  // per-token weights, as FLOW's per-sample weights enter
  const Pass a = run(*gpu, tokens, targets, nullptr, w.data()),
             b = run(*host, tokens, targets, nullptr, w.data());
  EXPECT_NEAR(a.loss, b.loss, kLossTol * std::max(1.0f, std::fabs(b.loss)));
  EXPECT_LT(max_rel_diff(a.losses, b.losses), kLossTol);
  EXPECT_LT(max_rel_diff(a.grads, b.grads), kGradTol);
}

// With a loss mask (prompt tokens masked) and the mean-loss gradient (dlosses null).
TEST_P(CudaModel, MaskedMeanLossAndGradientsMatchHost) {
  Vec mask(static_cast<std::size_t>(B * T), 1.0f);
  for (const std::size_t i : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{T}}) mask[i] = 0.0f;
  const Pass a = run(*gpu, tokens, targets, mask.data(), nullptr);
  const Pass b = run(*host, tokens, targets, mask.data(), nullptr);
  EXPECT_EQ(gpu->counted_tokens(), host->counted_tokens());
  EXPECT_NEAR(a.loss, b.loss, kLossTol * std::max(1.0f, std::fabs(b.loss)));
  EXPECT_LT(max_rel_diff(a.losses, b.losses), kLossTol);
  EXPECT_EQ(a.losses[0], 0.0f);
  EXPECT_LT(max_rel_diff(a.grads, b.grads), kGradTol);
}

// The logits, up to a constant per row (all a softmax sees): the loss against target v is
// logsumexp - logit[v], so one inference forward per v gives the whole log-softmax [B*T, V].
// (Transformer::logits() is a host pointer; a logits view would make this one forward.)
TEST_P(CudaModel, LogSoftmaxOfLogitsMatchesHost) {
  Vec a(static_cast<std::size_t>(B * T * V)), b(a.size());
  for (index_t v = 0; v < V; ++v) {
    const IVec all_v(static_cast<std::size_t>(B * T), static_cast<std::int32_t>(v));
    gpu->forward(tokens.data(), all_v.data(), nullptr, B, T, /*training=*/false);
    host->forward(tokens.data(), all_v.data(), nullptr, B, T, /*training=*/false);
    const Vec la = download(*gpu, gpu->token_losses_view()), lb = download(*host, host->token_losses_view());
    for (index_t n = 0; n < B * T; ++n) {
      a[static_cast<std::size_t>(n * V + v)] = la[static_cast<std::size_t>(n)];
      b[static_cast<std::size_t>(n * V + v)] = lb[static_cast<std::size_t>(n)];
    }
  }
  EXPECT_LT(max_rel_diff(a, b), kLossTol);
}

// Bad ids are DataErrors: a token (the model checks tokens before the upload) and a target (the cuda
// cross-entropy's device-side check).
TEST_P(CudaModel, IdsOutsideTheVocabularyAreDataErrors) {
  IVec bad = tokens;
  bad[3] = static_cast<std::int32_t>(V);
  EXPECT_THROW(gpu->forward(bad.data(), targets.data(), nullptr, B, T), flowlm::DataError);
  IVec bad_target = targets;
  bad_target[5] = -1;
  EXPECT_THROW(gpu->forward(tokens.data(), bad_target.data(), nullptr, B, T), flowlm::DataError);
}

std::string param_name(const ::testing::TestParamInfo<std::string>& p) { return p.param; }
INSTANTIATE_TEST_SUITE_P(Families, CudaModel,
                         ::testing::Values("gpt2", "llama", "qwen2", "mistral", "gemma2"), param_name);

}  // namespace
