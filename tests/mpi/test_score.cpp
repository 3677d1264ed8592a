// The FLOW scoring pass at np 1/2/4: scores.h5 written by all ranks is bitwise identical to
// a one-rank run made inside the test; scores that do not belong to the sample set are
// refused; FLOW / l2_init fine-tuning gives the same losses at any rank count and resumes
// bitwise.
#include <gtest/gtest.h>

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
#include "model/transformer.hpp"
#include "support/testing.hpp"
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
      "'\nl2_lambda = 100.0\n";
  return config::parse_job(toml, "ft job", sets);
}

TEST_F(ScoreMpi, WeightedFineTuningAgreesAcrossRankCountsAndResumesBitwise) {
  train::score_samples(dir / "base.h5", dir / "set.h5", config::FlowConfig{}, 8, dir / "s.h5", world);
  for (const std::string method : {"flow", "l2_init", "standard"}) {
    const auto dp = train::run_training(ft_job(dir.path(), method + "_dp", method), world);
    ASSERT_EQ(dp.losses.size(), 8u);
    if (world.is_root()) {
      const auto one = train::run_training(ft_job(dir.path(), method + "_one", method), Communicator::self());
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
    const auto rest =
        train::run_training(ft_job(dir.path(), method + "_res", method, {"train.resume=true"}), world);
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

}  // namespace
