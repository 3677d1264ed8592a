// The two recipes on a tiny GPT and a synthetic corpus, end to end through the library:
// - LAWA: a high-learning-rate run with spaced checkpoints; the uniform average of the last
//   k = 5 has a lower validation loss than the raw checkpoint at the same step.
// - Inheritune: the first n/2 blocks of a trained larger model beat the same small shape from
//   random init after the same number of steps.
// Fixed seeds make both deterministic; the numbers are printed for the record.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "data/loader.hpp"
#include "data/shard.hpp"
#include "io/checkpoint.hpp"
#include "model/gpt.hpp"
#include "support/testing.hpp"
#include "train/average.hpp"
#include "train/evaluate.hpp"
#include "train/inherit.hpp"
#include "train/trainer.hpp"

namespace {

using flowlm::comm::Communicator;
namespace fs = std::filesystem;

/// A noisy first-order Markov chain over 32 tokens: usually next = (5 * prev + 3) mod 32,
/// one time in eight a random token (an irreducible loss floor, and gradient noise).
void write_corpus(const fs::path& dir) {
  std::vector<std::uint16_t> train, val;
  std::uint64_t x = 2024;
  std::uint16_t prev = 1;
  for (int i = 0; i < 40000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const auto noise = static_cast<std::uint16_t>((x >> 33) % 32);
    const auto next = (x >> 61) == 0 ? noise : static_cast<std::uint16_t>((prev * 5 + 3) % 32);
    (i < 4000 ? val : train).push_back(next);  // val: one contiguous stretch
    prev = next;
  }
  flowlm::data::write_shard(dir / "train_000000.bin", train);
  flowlm::data::write_shard(dir / "val_000000.bin", val);
}

flowlm::config::JobConfig job(const fs::path& data, const fs::path& run,
                              const std::vector<std::string>& sets) {
  const std::string toml = "[run]\ndir = '" + run.string() + "'\nseed = 11\n[data]\ntrain = ['" +
                           (data / "train_*.bin").string() + "']\nval = ['" + (data / "val_*.bin").string() +
                           "']\nvocab_size = 32\n"
                           "[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nvocab_size = 32\nblock_size = 32\n"
                           "[optim]\nlr = 1e-2\nmin_lr = 1e-3\nwarmup_steps = 10\n"
                           "[train]\nglobal_batch = 16\nmicro_batch = 16\nseq_len = 32\nmax_steps = 100\n"
                           "log_every = 50\nval_every = 0\n"
                           "[checkpoint]\nsave_every = 0\n";
  return flowlm::config::parse_job(toml, "recipe job", sets);
}

/// Mean loss of a checkpoint over every validation window.
double val_loss(const fs::path& ckpt, const flowlm::config::JobConfig& j) {
  const auto& m = j.model;
  flowlm::model::GPT gpt({m.n_layer, m.n_head, m.n_embd, m.vocab_size, m.block_size});
  const flowlm::io::CheckpointReader r(ckpt);
  for (const auto& p : gpt.param_table()) r.read("model", p.name, p.shape, gpt.params() + p.offset);
  const flowlm::data::TokenDataset val(flowlm::data::expand_paths(j.data.val), j.train.seq_len,
                                       j.model.vocab_size);
  return flowlm::train::evaluate_windows(gpt, val, 64, 16, Communicator::self()).mean();
}

class Recipes : public ::testing::Test {
 protected:
  void SetUp() override { write_corpus(dir.path()); }
  flowlm::testing::TempDir dir{"flowlm-recipes"};
};

TEST_F(Recipes, LawaBeatsTheRawCheckpointAtTheSameStepWithAHighLearningRate) {
  // High constant learning rate (LAWA's setting; 10x the 1e-2 of the other runs here): the
  // iterates bounce around the valley. Checkpoints every 5 steps from step 60.
  const auto j = job(dir.path(), dir / "lawa",
                     {"optim.lr=1e-1", "optim.schedule=constant", "train.max_steps=100",
                      "checkpoint.save_steps=[60, 65, 70, 75, 80, 85, 90, 95, 100]"});
  flowlm::train::run_training(j, Communicator::self());
  auto avg = j;
  avg.average.mode = "lawa";
  avg.average.k = 5;
  avg.average.every = 5;
  const auto outs = flowlm::train::run_average(avg, Communicator::self());
  ASSERT_FALSE(outs.empty());
  int wins = 0, total = 0;
  double last_raw = 0, last_lawa = 0;
  for (const auto& out : outs) {
    const flowlm::io::CheckpointReader r(out);
    const auto step = r.meta().step;
    const double raw = val_loss(dir / "lawa" / flowlm::io::checkpoint_name(step), j);
    const double lawa = val_loss(out, j);
    std::printf("LAWA k=5 every=5  step %3lld: raw val %.4f  lawa val %.4f\n", static_cast<long long>(step),
                raw, lawa);
    wins += lawa < raw;
    ++total;
    last_raw = raw;
    last_lawa = lawa;
  }
  EXPECT_LT(last_lawa, last_raw) << "LAWA at the final step";
  EXPECT_GE(2 * wins, total) << "LAWA should win at most window ends";
}

TEST_F(Recipes, InherituneBeatsRandomInitAfterTheSameSteps) {
  // The larger model: 4 blocks, trained on the corpus.
  const auto big = job(dir.path(), dir / "big", {"model.n_layer=4", "train.max_steps=100"});
  flowlm::train::run_training(big, Communicator::self());
  // Inherit k = n/2 = 2 blocks (the default), then train both small models the same way.
  auto inh = big;
  inh.run.dir = (dir / "inherit").string();
  inh.inherit.from = (dir / "big" / flowlm::io::checkpoint_name(100)).string();
  const fs::path small_init = flowlm::train::run_inherit(inh, Communicator::self());
  const std::vector<std::string> small = {"model.n_layer=2", "train.max_steps=20"};
  auto warm_sets = small;
  warm_sets.push_back("model.init_from=" + small_init.string());
  const auto warm = job(dir.path(), dir / "warm", warm_sets);
  const auto cold = job(dir.path(), dir / "cold", small);
  flowlm::train::run_training(warm, Communicator::self());
  flowlm::train::run_training(cold, Communicator::self());
  const double at_start = val_loss(small_init, warm);
  const double warm_loss = val_loss(dir / "warm" / flowlm::io::checkpoint_name(20), warm);
  const double cold_loss = val_loss(dir / "cold" / flowlm::io::checkpoint_name(20), cold);
  const double big_loss = val_loss(dir / "big" / flowlm::io::checkpoint_name(100), big);
  std::printf(
      "Inheritune: 4-block source val %.4f; inherited 2 blocks val %.4f at step 0; after 20 steps: inherited "
      "%.4f, "
      "random init %.4f\n",
      big_loss, at_start, warm_loss, cold_loss);
  EXPECT_LT(warm_loss, cold_loss);
}

}  // namespace
