// FLOW end to end on the synthetic multi-task corpus: pretrain a tiny GPT on old tasks
// (copy, reverse, sort, add), score a fine-tuning set of a new task (multiply, mixed with
// some old-task samples, as real sets are) with it, fine-tune standard vs FLOW with the same
// data, steps and learning rate, and compare exact-match accuracy on held-out sets. The
// paper's claim, tested so that it holds on any machine and can still fail: FLOW retains more
// of the old tasks, as a mean paired difference over several seeds that exceeds twice its
// standard error (float results differ between machines, so no single run is compared).
// Measured on 2 cores (pretraining seeds 1-4 x fine-tuning seeds 1-3, 400 held-out problems
// per task): FLOW - standard between +2.6 and +7.8 points in every one of the 12 pairs, mean
// +3.2 +- 0.14 (SE) for pretraining seeds 1-2 and +5.7 +- 0.7 for 3-4, while standard
// fine-tuning forgot 12-15 points; the default 2 x 2 pairs keep the test near 30 s.
// Registered with NP 1 and one thread. The FLOW_* environment variables override the setup
// for exploring other seeds and sizes (FLOW_WORKDIR keeps and reuses the pretrained models).
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/stats.hpp"
#include "data/sampleset.hpp"
#include "data/synthetic.hpp"
#include "data/tokenizer.hpp"
#include "io/checkpoint.hpp"
#include "support/testing.hpp"
#include "train/evaluate.hpp"
#include "train/flow.hpp"
#include "train/trainer.hpp"

namespace fs = std::filesystem;
using namespace flowlm;
using flowlm::comm::Communicator;

namespace {

std::int64_t env_int(const char* name, std::int64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoll(v) : fallback;
}
double env_double(const char* name, double fallback) {
  const char* v = std::getenv(name);
  return v ? std::atof(v) : fallback;
}
std::vector<std::int64_t> env_list(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  std::stringstream in(v ? v : fallback);
  std::vector<std::int64_t> out;
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::atoll(item.c_str()));
  return out;
}

struct FlowSetup {
  std::vector<std::int64_t> pre_seeds = env_list("FLOW_PRE_SEEDS", "1,2");
  std::vector<std::int64_t> ft_seeds = env_list("FLOW_FT_SEEDS", "1,2");
  std::int64_t pre_steps = env_int("FLOW_PRE_STEPS", 2000);
  std::int64_t ft_steps = env_int("FLOW_FT_STEPS", 150);
  double pre_lr = env_double("FLOW_PRE_LR", 5e-3);
  double ft_lr = env_double("FLOW_FT_LR", 1e-3);
  std::int64_t n_embd = env_int("FLOW_D", 64);
  std::int64_t n_layer = env_int("FLOW_L", 2);
  std::int64_t n_eval = env_int("FLOW_EVAL", 400);
  std::int64_t n_pre = env_int("FLOW_NPRE", 2000);
  std::int64_t n_new = env_int("FLOW_NNEW", 1500);
  std::int64_t known_every = env_int("FLOW_KNOWN_EVERY", 4);
  double tau_q = env_double("FLOW_TAU_Q", 0.5);
  std::string normalize = std::getenv("FLOW_NORM") ? std::getenv("FLOW_NORM") : "mean";
  // LoRA (FLOW_LORA_R, FLOW_LORA_LR): adapters on every projection; they need a larger step.
  std::int64_t lora_r = env_int("FLOW_LORA_R", 8);
  double lora_lr = env_double("FLOW_LORA_LR", 1e-2);
};

/// The pretrained bases, shared by the experiments of this process (FLOW_WORKDIR keeps them).
fs::path work_dir() {
  static const flowlm::testing::TempDir tmp("flowlm-flow");
  return std::getenv("FLOW_WORKDIR") ? fs::path(std::getenv("FLOW_WORKDIR")) : tmp.path();
}

std::string model_toml(const FlowSetup& s) {
  return fmt::format("[model]\nn_layer = {}\nn_head = 4\nn_embd = {}\nvocab_size = 256\nblock_size = 32\n",
                     s.n_layer, s.n_embd);
}

/// Mean exact-match accuracy over the old tasks' held-out sets, and the new task's.
struct Accuracy {
  double old_tasks = 0, target = 0;
  double target_loss = 0;  ///< answer loss on the new task: a far less noisy sign of learning it
};

Accuracy evaluate(const fs::path& ckpt, const std::vector<fs::path>& old_sets, const fs::path& target_set) {
  auto gpt = model::load_model(ckpt);
  const auto self = Communicator::self();
  Accuracy a;
  for (const auto& p : old_sets)
    a.old_tasks += train::evaluate_samples(*gpt, data::read_sample_set(p), 64, self).accuracy() /
                   static_cast<double>(old_sets.size());
  const auto t = train::evaluate_samples(*gpt, data::read_sample_set(target_set), 64, self);
  a.target = t.accuracy();
  a.target_loss = t.answer_loss.mean();
  return a;
}

/// Standard vs FLOW fine-tuning of the same bases with the same data; with lora_r > 0 both train
/// LoRA adapters (r = lora_r, alpha = 2 r) instead of every weight.
void flow_experiment(const FlowSetup& s, std::int64_t lora_r) {
  const fs::path dir = work_dir();
  const double ft_lr = lora_r > 0 ? s.lora_lr : s.ft_lr;
  const std::string what = lora_r > 0 ? fmt::format("LoRA r={}", lora_r) : std::string("full");
  const data::ByteTokenizer tok;
  const std::vector<std::string> old = {"copy", "reverse", "sort", "add"};
  const auto self = Communicator::self();

  // Held-out sets, the same for every seed: the standard error of an accuracy over the 4 x
  // n_eval old-task samples is about 0.5 / sqrt(1600) = 1.2 points, and paired comparisons
  // on the same items cancel most of it.
  std::vector<fs::path> old_sets;
  for (const auto& t : old) {
    old_sets.push_back(dir / ("heldout_" + t + ".h5"));
    data::write_synthetic_sample_set(
        old_sets.back(), data::synthetic_samples(t, s.n_eval, 100, data::Split::heldout), tok, 32);
  }
  const fs::path target_set = dir / "heldout_multiply.h5";
  data::write_synthetic_sample_set(
      target_set, data::synthetic_samples("multiply", s.n_eval, 100, data::Split::heldout), tok, 32);

  std::vector<double> diff, drop, learned;
  for (const auto pre_seed : s.pre_seeds) {
    // Pretraining: the old tasks, interleaved, with the loss on the answers (the sample-set
    // trainer from a random init; the answers are all there is to learn, so this is the
    // cheapest way to a competent tiny model).
    const fs::path pre_dir = dir / fmt::format("pre{}", pre_seed);
    const fs::path base = pre_dir / io::checkpoint_name(s.pre_steps);
    if (!fs::exists(base)) {
      const fs::path pre_set = dir / fmt::format("pretrain{}.h5", pre_seed);
      data::write_synthetic_sample_set(
          pre_set,
          data::synthetic_mixture(old, s.n_pre, static_cast<std::uint64_t>(pre_seed), data::Split::train),
          tok, 32);
      const std::string pre_toml = fmt::format(
          "[run]\ndir = '{}'\nseed = {}\n{}[optim]\nlr = {}\nmin_lr = {}\nwarmup_steps = 20\nweight_decay = "
          "0.0\n[train]\nglobal_batch = 32\nmicro_batch = 32\nseq_len = 32\nmax_steps = {}\nlog_every = "
          "500\nval_every = 0\n[finetune]\ntrain_set = '{}'\n",
          pre_dir.string(), pre_seed, model_toml(s), s.pre_lr, s.pre_lr / 10, s.pre_steps, pre_set.string());
      train::run_training(config::parse_job(pre_toml, "pretrain job"), self);
    }
    const Accuracy before = evaluate(base, old_sets, target_set);

    for (const auto ft_seed : s.ft_seeds) {
      // Each fine-tuning seed draws another fine-tuning set and sample order; both methods
      // see exactly the same data, steps and learning rate, only the weighting differs.
      const std::string tag = fmt::format("p{}f{}", pre_seed, ft_seed);
      const fs::path ft_set = dir / (tag + "_train.h5"), scores_file = dir / (tag + "_scores.h5");
      data::write_synthetic_sample_set(
          ft_set,
          data::synthetic_finetune_set("multiply", s.n_new, old, s.known_every,
                                       static_cast<std::uint64_t>(1000 * pre_seed + ft_seed)),
          tok, 32);
      config::FlowConfig flow;
      flow.normalize = s.normalize;
      if (s.tau_q != 0.5) flow.tau = {config::TauSpec::Kind::quantile, s.tau_q};
      const auto scores = train::score_samples(base, ft_set, flow, 64, scores_file, self);

      auto finetune = [&](const std::string& method) {
        const fs::path run = dir / (tag + "_" + method + (lora_r > 0 ? "_lora" : ""));
        std::string toml = fmt::format(
            "[run]\ndir = '{}'\nseed = {}\n{}init_from = '{}'\n[optim]\nlr = {}\nmin_lr = {}\nwarmup_steps = "
            "0\nschedule = 'constant'\nweight_decay = 0.0\n[train]\nglobal_batch = 32\nmicro_batch = "
            "32\nseq_len = 32\nmax_steps = {}\nlog_every = 1000\nval_every = 0\n[checkpoint]\nsave_every = "
            "0\n[finetune]\nmethod = '{}'\ntrain_set = '{}'\nscores = '{}'\n",
            run.string(), ft_seed, model_toml(s), base.string(), ft_lr, ft_lr, s.ft_steps, method,
            ft_set.string(), scores_file.string());
        if (lora_r > 0) toml += fmt::format("[finetune.lora]\nr = {}\nalpha = {}\n", lora_r, 2 * lora_r);
        train::run_training(config::parse_job(toml, method + " job"), self);
        const auto a = evaluate(run / io::checkpoint_name(s.ft_steps), old_sets, target_set);
        fs::remove_all(run);
        return a;
      };
      const Accuracy standard = finetune("standard");
      const Accuracy flowed = finetune("flow");
      diff.push_back(flowed.old_tasks - standard.old_tasks);
      drop.push_back(before.old_tasks - standard.old_tasks);
      learned.push_back(before.target_loss - flowed.target_loss);
      std::printf(
          "[flow experiment, %s] pretrain seed %lld, fine-tune seed %lld (tau %.3f, weights [%.3f, %.3f]): "
          "old "
          "tasks pretrained %.4f, standard %.4f, FLOW %.4f (%+.4f); multiply %.3f / %.3f / %.3f (answer loss "
          "%.3f / %.3f / %.3f)\n",
          what.c_str(), static_cast<long long>(pre_seed), static_cast<long long>(ft_seed), scores.tau,
          *std::min_element(scores.weight.begin(), scores.weight.end()),
          *std::max_element(scores.weight.begin(), scores.weight.end()), before.old_tasks, standard.old_tasks,
          flowed.old_tasks, flowed.old_tasks - standard.old_tasks, before.target, standard.target,
          flowed.target, before.target_loss, standard.target_loss, flowed.target_loss);
      EXPECT_GT(before.old_tasks, 0.5) << "pretraining did not learn the old tasks (" << tag << ")";
    }
  }
  const MeanSe d = mean_se(diff), f = mean_se(drop), l = mean_se(learned);
  std::printf(
      "[flow experiment, %s] %zu pairs: FLOW - standard on the old tasks %+.4f +- %.4f (SE); standard FT "
      "forgets %.4f +- %.4f; FLOW lowers the multiply answer loss by %.3f +- %.3f nats\n",
      what.c_str(), diff.size(), d.mean, d.se, f.mean, f.se, l.mean, l.se);
  // The setup is meaningful only when standard fine-tuning forgets and FLOW still learns the
  // new task; then the claim itself.
  EXPECT_GT(f.mean, 2 * f.se + 0.02) << "standard fine-tuning should forget part of the old tasks";
  EXPECT_GT(l.mean, 2 * l.se) << "FLOW fine-tuning should still learn the new task";
  EXPECT_GT(d.mean, 2 * d.se) << "FLOW should retain more of the old tasks than standard fine-tuning ("
                              << what << ")";
}

TEST(FlowExperiment, FlowRetainsMoreOfThePretrainingTasksThanStandardFineTuning) {
  flow_experiment(FlowSetup{}, 0);
}

// The same claim when both methods train LoRA adapters on the same bases (the FLOW paper's
// setting for Gemma 2): FLOW + LoRA retains more than standard LoRA.
TEST(FlowExperiment, FlowWithLoraRetainsMoreThanStandardLora) {
  const FlowSetup s;
  flow_experiment(s, s.lora_r);
}

}  // namespace
