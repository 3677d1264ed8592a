// The FLOW scoring pass at np 1/2/4: scores.h5 written by all ranks is bitwise identical to
// a one-rank run made inside the test; scores that do not belong to the sample set are
// refused; FLOW / l2_init fine-tuning gives the same losses at any rank count and resumes
// bitwise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/error.hpp"
#include "data/sampleset.hpp"
#include "data/synthetic.hpp"
#include "data/tokenizer.hpp"
#include "io/checkpoint.hpp"
#include "io/hdf5.hpp"
#include "model/checkpoint.hpp"
#include "model/transformer.hpp"
#include "support/testing.hpp"
#include "train/batch_source.hpp"
#include "train/flow.hpp"
#include "train/trainer.hpp"

namespace fs = std::filesystem;
using namespace flowlm;
using flowlm::comm::Communicator;

namespace {

const char* kModel = "[model]\nn_layer = 2\nn_head = 2\nn_embd = 16\nvocab_size = 256\nblock_size = 24\n";

class ScoreMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    const data::ByteTokenizer tok;
    if (world.is_root()) {
      // 37 samples: blocks of uneven size at every rank count.
      data::write_synthetic_sample_set(
          dir / "set.h5", data::synthetic_mixture({"add", "reverse"}, 18, 3, data::Split::train), tok, 24);
      auto extra = data::synthetic_mixture({"add", "reverse"}, 18, 3, data::Split::train);
      extra.push_back({"cpy:ab=", "ab"});
      data::write_synthetic_sample_set(dir / "set37.h5", extra, tok, 24);
      extra.back().answer = "ba";
      data::write_synthetic_sample_set(dir / "other37.h5", extra, tok, 24);
    }
    // A "pre-trained" model: seeded random weights, written collectively.
    const auto job = config::parse_job(std::string(kModel) + "[train]\nseq_len = 24\n", "model");
    model::Transformer gpt(job.model);
    gpt.init_random(11);
    io::CheckpointMeta meta;
    meta.step = 5;
    meta.world_size = world.size();
    meta.config_toml = config::to_toml(job);
    meta.data_cursor = {0};
    std::vector<io::TensorRef> refs;
    for (const auto& p : gpt.param_table()) refs.push_back({p.name, p.shape, gpt.params() + p.offset, 0});
    io::write_checkpoint(dir / "base.h5", meta, refs, {}, world);
    world.barrier();
  }
  Communicator world = Communicator::world();
  flowlm::testing::TempDir dir{"flowlm-score", /*shared=*/true};
};

template <class T>
std::vector<T> dataset(const fs::path& f, const char* name) {
  return io::h5::File::open(f).read_dataset<T>(name);
}

TEST_F(ScoreMpi, ScoresAreBitwiseIdenticalAtAnyRankCount) {
  for (const std::string tau : {"\"median\"", "{quantile = 0.25}", "0.8"}) {
    for (const std::string norm : {"mean", "none"}) {
      const auto cfg = config::parse_job("[flow]\ntau = " + tau + "\nnormalize = '" + norm + "'\n", "flow");
      const auto r =
          train::score_samples(dir / "base.h5", dir / "set37.h5", cfg.flow, 4, dir / "np.h5", world);
      ASSERT_EQ(r.loss.size(), 37u);
      if (world.is_root()) {
        const auto one = train::score_samples(dir / "base.h5", dir / "set37.h5", cfg.flow, 4, dir / "one.h5",
                                              Communicator::self());
        EXPECT_EQ(r.tau, one.tau) << tau;
        for (const char* d : {"loss", "weight"})
          EXPECT_EQ(dataset<double>(dir / "np.h5", d), dataset<double>(dir / "one.h5", d))
              << d << " tau " << tau;
        EXPECT_EQ(dataset<std::int64_t>(dir / "np.h5", "n_tokens"),
                  dataset<std::int64_t>(dir / "one.h5", "n_tokens"));
        EXPECT_EQ(dataset<float>(dir / "np.h5", "token_loss"), dataset<float>(dir / "one.h5", "token_loss"));
        EXPECT_EQ(dataset<double>(dir / "np.h5", "weight"), r.weight);
        const auto f = io::h5::File::open(dir / "np.h5");
        EXPECT_EQ(f.read_attr_double("tau"), one.tau);
        EXPECT_EQ(f.read_attr_string("normalization"), norm);
        EXPECT_EQ(f.read_attr_int("checkpoint_step"), 5);
        EXPECT_EQ(f.read_attr_string("fingerprint"),
                  data::read_sample_set_info(dir / "set37.h5").fingerprint);
        EXPECT_GT(f.read_attr_double("loss_max"), f.read_attr_double("loss_min"));
        if (norm == "mean") {
          EXPECT_NEAR(f.read_attr_double("weight_mean"), 1.0, 1e-12);
        } else {
          EXPECT_LE(f.read_attr_double("weight_max"), 1.0);
        }
        if (tau == "0.8") {
          EXPECT_EQ(r.tau, 0.8);
        }
        // Each loss is the mean answer-token loss: a random model is near ln(256).
        for (const double l : r.loss) EXPECT_NEAR(l, std::log(256.0), 1.5);
      }
      world.barrier();
    }
  }
}

TEST_F(ScoreMpi, ScoresOfAnotherSampleSetAreRefused) {
  train::score_samples(dir / "base.h5", dir / "set37.h5", config::FlowConfig{}, 8, dir / "s.h5", world);
  EXPECT_NO_THROW(train::read_scores(dir / "s.h5", dir / "set37.h5"));
  try {
    train::read_scores(dir / "s.h5", dir / "set.h5");
    ADD_FAILURE() << "no error for a scores file of 37 samples on a set of 36";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("scores 37 samples"), std::string::npos) << e.what();
  }
  try {
    train::read_scores(dir / "s.h5", dir / "other37.h5");
    ADD_FAILURE() << "no error for a scores file of another set of the same size";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("fingerprint"), std::string::npos) << e.what();
  }
  // The trainer refuses it too, on every rank.
  const std::string toml = std::string("[run]\ndir = '") + (dir / "ft").string() + "'\n" + kModel +
                           "init_from = '" + (dir / "base.h5").string() +
                           "'\n[train]\nglobal_batch = 4\nmicro_batch = 1\nseq_len = 24\nmax_steps = 2\n"
                           "[optim]\nwarmup_steps = 0\n[finetune]\nmethod = 'flow'\ntrain_set = '" +
                           (dir / "other37.h5").string() + "'\nscores = '" + (dir / "s.h5").string() + "'\n";
  EXPECT_THROW(train::run_training(config::parse_job(toml, "ft"), world), DataError);
  const std::string no_scores = std::string("[finetune]\nmethod = 'flow'\ntrain_set = '") +
                                (dir / "set37.h5").string() + "'\n" + kModel + "[train]\nseq_len = 24\n";
  EXPECT_THROW(train::run_training(config::parse_job(no_scores, "ft"), world), ConfigError);
}

config::JobConfig ft_job(const fs::path& dir, const std::string& run, const std::string& method,
                         const std::vector<std::string>& sets = {}) {
  const std::string toml =
      std::string("[run]\ndir = '") + (dir / run).string() + "'\nseed = 3\n" + kModel + "init_from = '" +
      (dir / "base.h5").string() +
      "'\n[optim]\nlr = 1e-2\nmin_lr = 1e-3\nwarmup_steps = 2\n"
      "[train]\nglobal_batch = 8\nmicro_batch = 2\nseq_len = 24\nmax_steps = 8\nlog_every = 4\n"
      "[checkpoint]\nsave_every = 4\n[finetune]\nmethod = '" +
      method + "'\ntrain_set = '" + (dir / "set.h5").string() + "'\nscores = '" + (dir / "s.h5").string() +
      "'\nl2_lambda = 100.0\nl1_lambda = 100.0\n";
  return config::parse_job(toml, "ft job", sets);
}

TEST_F(ScoreMpi, WeightedFineTuningAgreesAcrossRankCountsAndResumesBitwise) {
  train::score_samples(dir / "base.h5", dir / "set.h5", config::FlowConfig{}, 8, dir / "s.h5", world);
  // Every method, and the ones that make sense with LoRA adapters (r 2 on every projection).
  const std::vector<std::string> lora = {"finetune.lora.r=2", "finetune.lora.alpha=4"};
  // The penalty is a mean over the trained parameters: the few adapters move far less than the
  // model, so it takes a smaller lambda for the loss (penalty included) to fall in 8 steps.
  std::vector<std::string> l1_lora = lora;
  l1_lora.push_back("finetune.l1_lambda=1");
  const std::vector<std::pair<std::string, std::vector<std::string>>> runs = {
      {"flow", {}}, {"l2_init", {}}, {"l1_init", {}}, {"standard", {}}, {"flow", lora}, {"l1_init", l1_lora}};
  for (const auto& [method_name, extra] : runs) {
    const std::string method = method_name + (extra.empty() ? "" : "_lora");
    auto ft = [&, &method_name = method_name, &extra = extra](const std::string& run,
                                                              std::vector<std::string> sets = {}) {
      sets.insert(sets.end(), extra.begin(), extra.end());
      return ft_job(dir.path(), run, method_name, sets);
    };
    const auto dp = train::run_training(ft(method + "_dp"), world);
    ASSERT_EQ(dp.losses.size(), 8u);
    if (world.is_root()) {
      const auto one = train::run_training(ft(method + "_one"), Communicator::self());
      for (std::size_t i = 0; i < 8; ++i)
        EXPECT_NEAR(dp.losses[i], one.losses[i], 1e-4 * std::abs(one.losses[i]))
            << method << " step " << i + 1;
      EXPECT_LT(one.losses.back(), one.losses.front()) << method;
    }
    world.barrier();
    if (world.is_root()) {
      fs::create_directories(dir / (method + "_res"));
      fs::copy_file(dir / (method + "_dp") / io::checkpoint_name(4),
                    dir / (method + "_res") / io::checkpoint_name(4));
    }
    world.barrier();
    const auto rest = train::run_training(ft(method + "_res", {"train.resume=true"}), world);
    ASSERT_EQ(rest.losses.size(), 4u);
    for (std::size_t i = 0; i < 4; ++i)
      EXPECT_EQ(rest.losses[i], dp.losses[4 + i]) << method << " step " << 5 + i;
  }
  // FLOW and standard fine-tuning differ (the weights are not all 1).
  world.barrier();
}

TEST_F(ScoreMpi, EpochsSetTheStepCount) {
  train::score_samples(dir / "base.h5", dir / "set.h5", config::FlowConfig{}, 8, dir / "s.h5", world);
  // 36 samples, 2 epochs, global batch 8: ceil(72 / 8) = 9 steps.
  const auto r = train::run_training(ft_job(dir.path(), "ep", "flow", {"finetune.epochs=2"}), world);
  EXPECT_EQ(r.last_step, 9);
}

// token_loss holds each answer token's loss in sample order: the per-sample loss is their mean,
// and a plain one-sample forward of the model gives the same values.
TEST_F(ScoreMpi, TokenLossesAreTheAnswerTokensOfAPlainForward) {
  train::score_samples(dir / "base.h5", dir / "set37.h5", config::FlowConfig{}, 4, dir / "t.h5", world);
  if (world.is_root()) {
    const auto scores = train::read_scores(dir / "t.h5", dir / "set37.h5");
    const data::SampleSet set = data::read_sample_set(dir / "set37.h5");
    auto gpt = model::load_model(dir / "base.h5");
    data::PaddedBatch pb;
    std::size_t at = 0;
    for (index_t i = 0; i < set.size(); ++i) {
      data::pack_samples(set, {i}, pb);
      gpt->forward(pb.inputs.data(), pb.targets.data(), pb.mask.data(), 1, pb.T, /*training=*/false);
      double sum = 0;
      index_t n = 0;
      for (index_t t = 0; t < pb.T; ++t) {
        if (pb.mask[static_cast<std::size_t>(t)] == 0.0f) continue;
        const float want = gpt->token_losses()[t];
        ASSERT_LT(at, scores.token_loss.size());
        EXPECT_NEAR(scores.token_loss[at], want, 1e-5f * want) << "sample " << i << " position " << t;
        sum += scores.token_loss[at++];
        ++n;
      }
      EXPECT_EQ(n, scores.n_tokens[static_cast<std::size_t>(i)]);
      EXPECT_NEAR(scores.loss[static_cast<std::size_t>(i)], sum / static_cast<double>(n), 1e-6);
    }
    EXPECT_EQ(at, scores.token_loss.size());
  }
  world.barrier();
}

double plain_median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// One scoring pass, then every granularity and several taus resolved by the trainer: the weights
// a micro-batch carries equal exp(-l / tau) / mean computed plainly from the file's losses, and a
// sweep over three taus trains three different runs from the same scores file.
TEST_F(ScoreMpi, FlowGranularityAndTauAreResolvedAtTrainTimeFromOneScoringPass) {
  config::FlowConfig score_flow;
  score_flow.tau.kind = config::TauSpec::Kind::value;
  score_flow.tau.value = 9.0;  // not what training uses: the trainer resolves its own
  train::score_samples(dir / "base.h5", dir / "set.h5", score_flow, 8, dir / "s.h5", world);
  const auto scores = train::read_scores(dir / "s.h5", dir / "set.h5");
  std::vector<double> token(scores.token_loss.begin(), scores.token_loss.end());
  std::vector<std::int64_t> start(scores.n_tokens.size());
  for (std::size_t i = 1; i < start.size(); ++i) start[i] = start[i - 1] + scores.n_tokens[i - 1];
  auto normalised = [](const std::vector<double>& l, double tau) {
    std::vector<double> w(l.size());
    double sum = 0;
    for (std::size_t i = 0; i < l.size(); ++i) sum += (w[i] = std::exp(-l[i] / tau));
    for (auto& x : w) x /= sum / static_cast<double>(l.size());
    return w;
  };
  for (const std::string granularity : {"sample", "token", "both"}) {
    for (const auto& [tau_text, fixed] : {std::pair<std::string, double>{"'median'", 0.0}, {"0.5", 0.5}}) {
      const auto job =
          ft_job(dir.path(), "g", "flow", {"flow.granularity=" + granularity, "flow.tau=" + tau_text});
      const double tau_s = fixed > 0 ? fixed : plain_median(scores.loss);
      const double tau_t = fixed > 0 ? fixed : plain_median(token);
      const auto ws = normalised(scores.loss, tau_s), wt = normalised(token, tau_t);
      auto source = train::make_batch_source(job, world);
      const double denom = source->begin_step();
      const train::MicroBatch mb = source->micro_batch(0);
      ASSERT_NE(mb.sample_ids, nullptr);
      for (index_t b = 0; b < mb.B; ++b) {
        const auto id = static_cast<std::size_t>(mb.sample_ids[b]);
        std::int64_t j = 0;
        for (index_t t = 0; t < mb.T; ++t) {
          const auto k = static_cast<std::size_t>(b * mb.T + t);
          double want = 0;
          if (mb.mask[k] != 0.0f) {
            want = granularity == "token" ? 1.0 : ws[id];
            if (granularity != "sample") want *= wt[static_cast<std::size_t>(start[id] + j++)];
          }
          EXPECT_NEAR(mb.weights[k], want, 1e-6 * want + 1e-12) << granularity << " tau " << tau_text;
          EXPECT_NEAR(mb.dlosses[k], want / denom, 1e-6 * want / denom + 1e-15);
        }
        EXPECT_EQ(j, granularity == "sample" ? 0 : scores.n_tokens[id]);
      }
    }
  }
  std::vector<double> first_losses;
  for (const std::string tau : {"0.5", "2.0", "{quantile = 0.9}"}) {
    const auto r = train::run_training(ft_job(dir.path(), "sweep_" + std::to_string(first_losses.size()),
                                              "flow", {"flow.tau=" + tau, "train.max_steps=2"}),
                                       world);
    ASSERT_EQ(r.losses.size(), 2u);
    first_losses.push_back(r.losses[0]);
  }
  EXPECT_NE(first_losses[0], first_losses[1]);
  EXPECT_NE(first_losses[1], first_losses[2]);
  world.barrier();
}

}  // namespace
