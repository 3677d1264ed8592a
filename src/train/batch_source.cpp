#include "train/batch_source.hpp"

#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/sampleset.hpp"
#include "data/shard.hpp"
#include "train/flow.hpp"

namespace flowlm::train {
namespace {

/// Pretraining: loss = mean over every token of the global batch.
class WindowSource final : public BatchSource {
 public:
  WindowSource(const config::JobConfig& job, const comm::Communicator& world)
      : loader_(data::expand_paths(job.data.train), job.train.seq_len, job.model.vocab_size,
                job.train.global_batch, job.train.micro_batch, world.rank(), world.size(),
                static_cast<std::uint64_t>(job.run.seed),
                /*shuffle=*/true),
        B_(job.train.micro_batch),
        T_(job.train.seq_len),
        denom_(static_cast<double>(job.train.global_batch * job.train.seq_len)) {
    const auto n = static_cast<std::size_t>(B_ * T_);
    inputs_.resize(n);
    targets_.resize(n);
    weights_.assign(n, 1.0f);
    dlosses_.assign(n, static_cast<float>(1.0 / denom_));
  }
  index_t grad_accum_steps() const override { return loader_.grad_accum_steps(); }
  double begin_step() override { return denom_; }
  MicroBatch micro_batch(index_t m) override {
    loader_.load_micro_batch(m, inputs_.data(), targets_.data());
    return MicroBatch{B_, T_, inputs_.data(), targets_.data(), nullptr, weights_.data(), dlosses_.data()};
  }
  std::int64_t step_tokens() const override { return loader_.tokens_per_step(); }
  void advance_step() override { loader_.advance_step(); }
  data::LoaderCursor cursor() const override { return loader_.cursor(); }
  void restore(data::LoaderCursor c) override { loader_.restore(c); }

 private:
  data::TokenLoader loader_;
  index_t B_, T_;
  double denom_;
  std::vector<std::int32_t> inputs_, targets_;
  std::vector<float> weights_, dlosses_;
};

/// Fine-tuning: loss = sum_i sum_t w_it * nll_it / (answer tokens in the global batch), with
/// w_it = 1 (standard, l2_init) or the FLOW weight: w_i of global sample i, w_it of its t-th answer
/// token, or their product (flow.granularity). Every rank holds the whole set, so every rank
/// computes the global denominator without communication.
class SampleSource final : public BatchSource {
 public:
  SampleSource(const config::JobConfig& job, const comm::Communicator& world, data::SampleSet set,
               FlowWeights weights)
      : set_(std::move(set)),
        weights_(std::move(weights)),
        loader_(set_.size(), job.train.global_batch, job.train.micro_batch, world.rank(), world.size(),
                static_cast<std::uint64_t>(job.run.seed), /*shuffle=*/true) {}
  index_t grad_accum_steps() const override { return loader_.grad_accum_steps(); }
  double begin_step() override {
    std::int64_t answer = 0;
    step_tokens_ = 0;
    for (const index_t i : loader_.step_samples()) {
      answer += set_.answer_tokens(i);
      step_tokens_ += set_.input_length(i);
    }
    denom_ = static_cast<double>(answer);
    return denom_;
  }
  MicroBatch micro_batch(index_t m) override {
    ids_ = loader_.micro_batch_samples(m);
    const auto& ids = ids_;
    data::pack_samples(set_, ids, batch_);
    const auto n = static_cast<std::size_t>(batch_.B * batch_.T);
    weights_tok_.resize(n);
    dlosses_.resize(n);
    for (index_t b = 0; b < batch_.B; ++b) {
      const auto id = static_cast<std::size_t>(ids[static_cast<std::size_t>(b)]);
      const double w_sample = weights_.sample.empty() ? 1.0 : weights_.sample[id];
      // The answer tokens of a sample are its mask positions, in order.
      const double* w_token =
          weights_.token.empty() ? nullptr : weights_.token.data() + weights_.token_start[id];
      for (index_t t = 0; t < batch_.T; ++t) {
        const auto k = static_cast<std::size_t>(b * batch_.T + t);
        double w = w_sample * batch_.mask[k];
        if (w_token && batch_.mask[k] != 0.0f) w *= *w_token++;
        weights_tok_[k] = static_cast<float>(w);
        dlosses_[k] = static_cast<float>(w / denom_);
      }
    }
    return MicroBatch{batch_.B,
                      batch_.T,
                      batch_.inputs.data(),
                      batch_.targets.data(),
                      batch_.mask.data(),
                      weights_tok_.data(),
                      dlosses_.data(),
                      ids_.data()};
  }
  std::int64_t step_tokens() const override { return step_tokens_; }
  void advance_step() override { loader_.advance_step(); }
  data::LoaderCursor cursor() const override { return loader_.cursor(); }
  void restore(data::LoaderCursor c) override { loader_.restore(c); }

 private:
  data::SampleSet set_;
  FlowWeights weights_;  ///< per global sample (and answer token); empty = all 1
  data::SampleLoader loader_;
  data::PaddedBatch batch_;
  std::vector<index_t> ids_;
  std::vector<float> weights_tok_, dlosses_;
  double denom_ = 1;
  std::int64_t step_tokens_ = 0;
};

}  // namespace

std::unique_ptr<BatchSource> make_batch_source(const config::JobConfig& job,
                                               const comm::Communicator& world) {
  const auto& ft = job.finetune;
  if (ft.train_set.empty()) return std::make_unique<WindowSource>(job, world);
  data::SampleSet set = data::read_sample_set(ft.train_set);
  if (set.vocab_size > job.model.vocab_size)
    fail<ConfigError>("{}: vocab_size {} exceeds model.vocab_size = {}", ft.train_set, set.vocab_size,
                      job.model.vocab_size);
  if (set.max_input_length() > job.model.block_size)
    fail<DataError>("{}: the longest sample has {} input tokens, more than model.block_size = {}",
                    ft.train_set, set.max_input_length(), job.model.block_size);
  FlowWeights weights;
  if (ft.method == "flow") {
    const Scores scores = read_scores(ft.scores, ft.train_set);
    check_scores_match(scores, set, ft.scores, ft.train_set);
    weights = resolve_flow_weights(scores, job.flow, ft.scores);
    std::string taus;
    if (weights.tau_sample > 0) taus += fmt::format(", sample tau {:.4f}", weights.tau_sample);
    if (weights.tau_token > 0) taus += fmt::format(", token tau {:.4f}", weights.tau_token);
    log::info(
        "train: FLOW weights from {} (granularity {}{}, normalization {}; the score stage's tau was {:.4f})",
        ft.scores, job.flow.granularity, taus, job.flow.normalize, scores.tau);
  } else if (!ft.scores.empty()) {
    log::warn("train: finetune.scores is ignored with finetune.method = \"{}\"", ft.method);
  }
  return std::make_unique<SampleSource>(job, world, std::move(set), std::move(weights));
}

}  // namespace flowlm::train
