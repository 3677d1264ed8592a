// Data-parallel training at np 1/2/4: the same global batch gives the same losses as one
// rank (to float rounding), resume continues the trajectory bitwise (and at another rank count
// to float rounding), and bad situations (another global batch on resume, NaN) stop with a clear
// error and keep the last checkpoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/error.hpp"
#include "data/shard.hpp"
#include "io/checkpoint.hpp"
#include "model/checkpoint.hpp"
#include "model/transformer.hpp"
#include "support/testing.hpp"
#include "train/trainer.hpp"

namespace {

using flowlm::comm::Communicator;
namespace fs = std::filesystem;

/// A learnable token stream: a noisy repeating pattern over a 32-token vocabulary.
void write_corpus(const fs::path& dir) {
  std::vector<std::uint16_t> train, val;
  std::uint64_t x = 12345;
  for (int i = 0; i < 12000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    const auto noise = static_cast<std::uint16_t>((x >> 33) % 32);
    const auto tok = static_cast<std::uint16_t>((i * 7 + i / 5) % 32);
    (i % 10 == 0 ? val : train).push_back((x >> 60) == 0 ? noise : tok);
  }
  flowlm::data::write_shard(dir / "train_000000.bin", train);
  flowlm::data::write_shard(dir / "val_000000.bin", val);
}

flowlm::config::JobConfig tiny_job(const fs::path& data, const fs::path& run,
                                   const std::vector<std::string>& sets) {
  const std::string toml = "[run]\ndir = '" + run.string() + "'\nseed = 7\n" + "[data]\ntrain = ['" +
                           (data / "train_*.bin").string() + "']\nval = ['" + (data / "val_*.bin").string() +
                           "']\nvocab_size = 32\n"
                           "[model]\nn_layer = 2\nn_head = 2\nn_embd = 16\nvocab_size = 32\nblock_size = 16\n"
                           "[optim]\nlr = 1e-2\nmin_lr = 1e-3\nwarmup_steps = 3\n"
                           "[train]\nglobal_batch = 8\nmicro_batch = 2\nseq_len = 16\nmax_steps = 12\n"
                           "log_every = 4\nval_every = 6\nval_batches = 2\n"
                           "[checkpoint]\nsave_every = 6\n";
  return flowlm::config::parse_job(toml, "test job", sets);
}

class TrainMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    if (world.is_root()) write_corpus(dir.path());
    world.barrier();
  }
  Communicator world = Communicator::world();
  flowlm::testing::TempDir dir{"flowlm-train", /*shared=*/true};
};

TEST_F(TrainMpi, SameGlobalBatchGivesSameLossesAtAnyRankCount) {
  const std::vector<std::string> longer = {"train.max_steps=40", "optim.lr=3e-2"};
  const auto dp = flowlm::train::run_training(tiny_job(dir.path(), dir / "dp", longer), world);
  ASSERT_EQ(dp.losses.size(), 40u);
  if (world.is_root()) {
    const auto one =
        flowlm::train::run_training(tiny_job(dir.path(), dir / "one", longer), Communicator::self());
    for (std::size_t i = 0; i < one.losses.size(); ++i)
      EXPECT_NEAR(dp.losses[i], one.losses[i], 1e-4 * std::abs(one.losses[i])) << "step " << i + 1;
    ASSERT_TRUE(dp.final_val_loss && one.final_val_loss);
    EXPECT_NEAR(*dp.final_val_loss, *one.final_val_loss, 1e-4);
    // The model learns the pattern: far below the uniform loss ln(32) = 3.47.
    EXPECT_LT(one.losses.back(), 0.5 * std::log(32.0));
  }
  world.barrier();
}

// The resume tests with the whole AdamW state on every rank (0) and with ZeRO-1 (1).
class TrainMpiZero : public TrainMpi, public ::testing::WithParamInterface<int> {
 protected:
  std::vector<std::string> with_zero(std::vector<std::string> sets) const {
    sets.push_back("optim.zero_stage=" + std::to_string(GetParam()));
    return sets;
  }
};
INSTANTIATE_TEST_SUITE_P(ZeroStage, TrainMpiZero, ::testing::Values(0, 1),
                         [](const auto& p) { return "zero" + std::to_string(p.param); });

TEST_P(TrainMpiZero, ResumeContinuesTheTrajectoryBitwise) {
  const auto full = flowlm::train::run_training(tiny_job(dir.path(), dir / "full", with_zero({})), world);
  ASSERT_EQ(full.losses.size(), 12u);
  // A run that stopped after its step-6 checkpoint: the same files, nothing after step 6.
  if (world.is_root()) {
    fs::create_directories(dir / "resumed");
    fs::copy_file(dir / "full" / "step_00000006.h5", dir / "resumed" / "step_00000006.h5");
  }
  world.barrier();
  const auto rest = flowlm::train::run_training(
      tiny_job(dir.path(), dir / "resumed", with_zero({"train.resume=true"})), world);
  EXPECT_EQ(rest.first_step, 6);
  ASSERT_EQ(rest.losses.size(), 6u);
  for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(rest.losses[i], full.losses[6 + i]) << "step " << 7 + i;
  // The final weights are bitwise equal too.
  if (world.is_root()) {
    const flowlm::io::CheckpointReader a(dir / "full" / "step_00000012.h5"),
        b(dir / "resumed" / "step_00000012.h5");
    for (const auto& [name, shape] : a.tensors("model")) {
      const auto ta = a.read("model", name), tb = b.read("model", name);
      ASSERT_EQ(ta.data, tb.data) << name;
    }
  }
  world.barrier();
  // A finished run resumed again has nothing left to do.
  const auto again = flowlm::train::run_training(
      tiny_job(dir.path(), dir / "full", with_zero({"train.resume=true"})), world);
  EXPECT_EQ(again.losses.size(), 0u);
}

// Saved at one rank count, resumed at another (np 4: 2 -> 4 -> 1 ranks; np 2: 2 -> 1 -> 2): the
// state is global, so every leg continues the uninterrupted run's losses to float rounding.
TEST_P(TrainMpiZero, ResumeAtAnotherRankCountContinuesTheTrajectory) {
  if (world.size() == 1) GTEST_SKIP() << "needs more than one rank";
  const std::vector<int> legs = world.size() >= 4 ? std::vector<int>{2, 4, 1} : std::vector<int>{2, 1, 2};
  const std::vector<std::string> sets = with_zero({"checkpoint.save_every=4"});
  std::vector<double> reference;
  {
    const flowlm::comm::SplitCommunicator first(world, world.rank() < legs[0] ? 0 : -1);
    if (first.member())
      reference = flowlm::train::run_training(tiny_job(dir.path(), dir / "leg0", sets), first.comm()).losses;
  }
  world.barrier();
  for (std::size_t k = 1; k < legs.size(); ++k) {
    const std::int64_t from = 4 * static_cast<std::int64_t>(k);
    const fs::path leg = dir / ("leg" + std::to_string(k));
    if (world.is_root()) {
      fs::create_directories(leg);
      fs::copy_file(dir / ("leg" + std::to_string(k - 1)) / flowlm::io::checkpoint_name(from),
                    leg / flowlm::io::checkpoint_name(from));
    }
    world.barrier();
    const flowlm::comm::SplitCommunicator ranks(world, world.rank() < legs[k] ? 0 : -1);
    if (!ranks.member()) continue;
    auto resumed_sets = sets;
    resumed_sets.push_back("train.resume=true");
    const auto s = flowlm::train::run_training(tiny_job(dir.path(), leg, resumed_sets), ranks.comm());
    if (!world.is_root()) continue;
    EXPECT_EQ(s.first_step, from);
    ASSERT_EQ(s.losses.size(), static_cast<std::size_t>(12 - from));
    for (std::size_t i = 0; i < s.losses.size(); ++i) {
      const double want = reference[static_cast<std::size_t>(from) + i];
      EXPECT_NEAR(s.losses[i], want, 1e-4 * std::abs(want))
          << legs[k - 1] << " -> " << legs[k] << " ranks, step " << from + 1 + static_cast<std::int64_t>(i);
    }
  }
  world.barrier();
}

// ZeRO-1 takes the same steps as the replicated optimizer (to the float rounding of the gradient
// norm's sum, which feeds clipping) and writes the same checkpoint: whole moments, same names.
TEST_F(TrainMpi, ZeroOneTracksTheReplicatedOptimizerAndWritesTheSameFiles) {
  if (world.size() == 1) GTEST_SKIP() << "needs more than one rank";
  const auto rep = flowlm::train::run_training(tiny_job(dir.path(), dir / "rep", {}), world);
  const auto zero =
      flowlm::train::run_training(tiny_job(dir.path(), dir / "zero", {"optim.zero_stage=1"}), world);
  ASSERT_EQ(zero.losses.size(), rep.losses.size());
  for (std::size_t i = 0; i < rep.losses.size(); ++i)
    EXPECT_NEAR(zero.losses[i], rep.losses[i], 1e-5 * std::abs(rep.losses[i])) << "step " << i + 1;
  // Per tensor, |zero - rep| / |rep| in the L2 norm: near-zero noise (a key bias's gradient
  // is zero in exact arithmetic) differs in its digits, not in the norm. EXPECT only: every rank
  // must reach the barrier.
  if (world.is_root()) {
    const flowlm::io::CheckpointReader a(dir / "rep" / "step_00000012.h5"),
        b(dir / "zero" / "step_00000012.h5");
    for (const char* group : {"model", "optim"}) {
      const auto ta = a.tensors(group), tb = b.tensors(group);
      EXPECT_EQ(ta, tb) << group;
      if (ta != tb) continue;
      for (const auto& [name, shape] : ta) {
        const auto x = a.read(group, name), y = b.read(group, name);
        double diff = 0, norm = 0;
        for (std::size_t i = 0; i < x.data.size(); ++i) {
          diff += (double{y.data[i]} - x.data[i]) * (double{y.data[i]} - x.data[i]);
          norm += double{x.data[i]} * x.data[i];
        }
        EXPECT_LE(std::sqrt(diff), 1e-3 * std::sqrt(norm) + 1e-9) << group << "/" << name;
      }
    }
  }
  world.barrier();
}

// What the data order depends on cannot change on resume; the error names the key and both values.
TEST_F(TrainMpi, ResumeWithAnotherGlobalBatchIsRefused) {
  flowlm::train::run_training(tiny_job(dir.path(), dir / "run", {"train.max_steps=6"}), world);
  try {
    flowlm::train::run_training(
        tiny_job(dir.path(), dir / "run", {"train.resume=true", "train.global_batch=16"}), world);
    ADD_FAILURE() << "resuming with another global batch did not throw";
  } catch (const flowlm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.global_batch = 8 and this job has 16"), std::string::npos)
        << e.what();
  }
  world.barrier();
}

TEST_F(TrainMpi, NonFiniteLossStopsAndKeepsTheLastCheckpoint) {
  flowlm::train::run_training(tiny_job(dir.path(), dir / "nan", {"train.max_steps=6"}), world);
  // An absurd learning rate blows the weights up within a step or two.
  EXPECT_THROW(
      flowlm::train::run_training(
          tiny_job(dir.path(), dir / "nan", {"train.resume=true", "optim.lr=1e30", "optim.min_lr=1e29"}),
          world),
      flowlm::NumericError);
  const auto newest = flowlm::io::newest_valid_checkpoint(dir / "nan");
  ASSERT_TRUE(newest.has_value());
  EXPECT_EQ(newest->filename(), "step_00000006.h5");
  EXPECT_EQ(flowlm::io::list_checkpoints(dir / "nan").size(), 1u);
  world.barrier();
}

TEST_F(TrainMpi, OnlineEmaFollowsTheSavedWeights) {
  const double d = 0.8;
  flowlm::train::run_training(
      tiny_job(dir.path(), dir / "ema",
               {"train.max_steps=4", "checkpoint.save_every=1", "train.ema_decay=0.8"}),
      world);
  if (world.is_root()) {
    // ema_0 = the initial weights, ema_k = d ema_{k-1} + (1 - d) w_k, from the raw checkpoints.
    const auto job = tiny_job(dir.path(), dir / "ema", {});
    flowlm::model::Transformer gpt(job.model);
    gpt.init_random(static_cast<std::uint64_t>(job.run.seed));
    std::vector<double> ema(gpt.params(), gpt.params() + gpt.num_params());
    for (int step = 1; step <= 4; ++step) {
      const flowlm::io::CheckpointReader raw(dir / "ema" / flowlm::io::checkpoint_name(step));
      for (const auto& p : gpt.param_table()) {
        const auto w = raw.read("model", p.name);
        for (flowlm::index_t i = 0; i < p.numel; ++i)
          ema[p.offset + i] = d * ema[p.offset + i] + (1 - d) * w.data[i];
      }
    }
    const flowlm::io::CheckpointReader saved(dir / "ema" / ("ema_" + flowlm::io::checkpoint_name(4)));
    EXPECT_EQ(saved.meta().extra.at("kind"), "ema");
    double max_err = 0, max_gap = 0;
    const flowlm::io::CheckpointReader last(dir / "ema" / flowlm::io::checkpoint_name(4));
    for (const auto& p : gpt.param_table()) {
      const auto e = saved.read("model", p.name), w = last.read("model", p.name);
      for (flowlm::index_t i = 0; i < p.numel; ++i) {
        max_err = std::max(max_err, std::abs(e.data[i] - ema[p.offset + i]));
        max_gap = std::max(max_gap, static_cast<double>(std::abs(e.data[i] - w.data[i])));
      }
    }
    EXPECT_LT(max_err, 1e-6);
    EXPECT_GT(max_gap, 1e-4);  // the EMA is not just the raw weights
  }
  world.barrier();
}

}  // namespace

namespace {

/// LoRA on the base trained by tiny_job: adapters (r 4) on every projection, the base frozen.
std::vector<std::string> lora_sets(const fs::path& base, std::vector<std::string> more = {}) {
  std::vector<std::string> s = {"model.init_from=" + base.string(), "finetune.lora.r=4",
                                "finetune.lora.alpha=8", "optim.lr=2e-2"};
  s.insert(s.end(), more.begin(), more.end());
  return s;
}

}  // namespace

TEST_F(TrainMpi, LoraTrainsOnlyTheAdaptersAtAnyRankCountAndResumesBitwise) {
  const fs::path base = dir / "base" / "step_00000012.h5";
  flowlm::train::run_training(tiny_job(dir.path(), dir / "base", {}), world);
  const auto dp = flowlm::train::run_training(tiny_job(dir.path(), dir / "lora", lora_sets(base)), world);
  ASSERT_EQ(dp.losses.size(), 12u);
  EXPECT_LT(dp.losses.back(), dp.losses.front()) << "the adapters should lower the loss";
  if (world.is_root()) {
    const auto one = flowlm::train::run_training(tiny_job(dir.path(), dir / "lora1", lora_sets(base)),
                                                 Communicator::self());
    for (std::size_t i = 0; i < one.losses.size(); ++i)
      EXPECT_NEAR(dp.losses[i], one.losses[i], 1e-4 * std::abs(one.losses[i])) << "step " << i + 1;
    // The checkpoint holds the adapters and names its base; readers get the merged model.
    const flowlm::io::CheckpointReader ck(dir / "lora" / "step_00000012.h5");
    ASSERT_TRUE(flowlm::model::is_lora_checkpoint(ck));
    EXPECT_EQ(fs::path(ck.meta().extra.at("lora_base")), fs::absolute(base).lexically_normal());
    const auto tensors = ck.tensors("model");
    ASSERT_FALSE(tensors.empty());
    for (const auto& [name, shape] : tensors) EXPECT_NE(name.find(".lora_"), std::string::npos) << name;
    EXPECT_EQ(ck.tensors("optim").size(), 2 * tensors.size());
    const auto merged = flowlm::model::load_model(ck.path());
    const auto plain = flowlm::model::load_model(base);
    double moved = 0;
    for (flowlm::index_t i = 0; i < plain->num_params(); ++i)
      moved = std::max(moved, static_cast<double>(std::fabs(merged->params()[i] - plain->params()[i])));
    EXPECT_GT(moved, 1e-4) << "the merged model differs from its base";
    // flowlm merge writes the same weights as a plain checkpoint.
    flowlm::model::merge_lora_checkpoint(ck.path(), dir / "merged.h5", Communicator::self());
    const flowlm::io::CheckpointReader m(dir / "merged.h5");
    EXPECT_FALSE(flowlm::model::is_lora_checkpoint(m));
    const auto reloaded = flowlm::model::load_model(dir / "merged.h5");
    ASSERT_EQ(reloaded->num_params(), merged->num_params());
    EXPECT_TRUE(
        std::equal(reloaded->params(), reloaded->params() + reloaded->num_params(), merged->params()));
  }
  world.barrier();

  // Resume from step 6: the same losses and the same adapters, bitwise.
  if (world.is_root()) {
    fs::create_directories(dir / "lora_resumed");
    fs::copy_file(dir / "lora" / "step_00000006.h5", dir / "lora_resumed" / "step_00000006.h5");
  }
  world.barrier();
  const auto rest = flowlm::train::run_training(
      tiny_job(dir.path(), dir / "lora_resumed", lora_sets(base, {"train.resume=true"})), world);
  ASSERT_EQ(rest.losses.size(), 6u);
  for (std::size_t i = 0; i < 6; ++i) EXPECT_EQ(rest.losses[i], dp.losses[6 + i]) << "step " << 7 + i;
  if (world.is_root()) {
    const flowlm::io::CheckpointReader a(dir / "lora" / "step_00000012.h5"),
        b(dir / "lora_resumed" / "step_00000012.h5");
    for (const auto& [name, shape] : a.tensors("model"))
      ASSERT_EQ(a.read("model", name).data, b.read("model", name).data) << name;
  }
  world.barrier();
  // Resuming it without LoRA, or after the base changed, is refused by name.
  EXPECT_THROW(
      flowlm::train::run_training(tiny_job(dir.path(), dir / "lora_resumed",
                                           {"model.init_from=" + base.string(), "train.resume=true"}),
                                  world),
      flowlm::ConfigError);
  world.barrier();
  if (world.is_root())
    fs::copy_file(dir / "base" / "step_00000006.h5", base, fs::copy_options::overwrite_existing);
  world.barrier();
  EXPECT_THROW(flowlm::train::run_training(
                   tiny_job(dir.path(), dir / "lora_resumed", lora_sets(base, {"train.resume=true"})), world),
               flowlm::ConfigError);
  if (world.is_root()) {
    try {
      flowlm::model::load_model(dir / "lora" / "step_00000012.h5");
      ADD_FAILURE() << "a changed base must be refused";
    } catch (const flowlm::IoError& e) {
      EXPECT_NE(std::string(e.what()).find("has changed"), std::string::npos) << e.what();
    }
  }
  world.barrier();
}
