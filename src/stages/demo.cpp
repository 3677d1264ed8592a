// `flowlm demo`: the whole system on a laptop CPU in a few minutes, with no downloads.
//
// A deterministic synthetic corpus of character-level tasks (copy, reverse, sort, add) is
// generated from the seed; a small GPT is pretrained on it with spaced checkpoints, the
// checkpoints are LAWA-averaged, a new task (multiply) is scored with the pretrained model
// and fine-tuned with standard and FLOW weighting, half of the pretrained blocks are
// inherited into a smaller model, and everything is evaluated. Every step is an ordinary
// stage run from a job file that the demo writes into <dir>/jobs/, so each can be rerun by
// hand (`flowlm train <dir>/jobs/pretrain.toml`).
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "data/synthetic.hpp"
#include "data/tokenizer.hpp"
#include "flowlm/build_config.hpp"
#include "io/checkpoint.hpp"
#include "stages/stage.hpp"
#include "train/average.hpp"
#include "train/flow.hpp"
#include "train/inherit.hpp"
#include "train/trainer.hpp"

namespace flowlm::stages {
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kOldTasks = {"copy", "reverse", "sort", "add"};
const std::string kNewTask = "multiply";

/// The demo's sizes, in one place.
struct Plan {
  std::int64_t n_layer = 2, n_embd = 64, n_head = 4, block = 32;
  std::int64_t pre_samples = 2000;  // per old task
  std::int64_t pre_steps = 2000, save_every = 25;
  double pre_lr = 5e-3;
  std::int64_t ft_steps = 150;
  double ft_lr = 1e-3;
  std::int64_t eval_samples = 100;  // per held-out set
  std::int64_t lawa_k = 5;
  std::int64_t small_steps = 300;  // Inheritune vs random init
};

class Demo {
 public:
  Demo(const DemoOptions& opt, const comm::Communicator& world) : opt_(opt), world_(world) {}

  void run() {
    const auto t0 = std::chrono::steady_clock::now();
    log::info("demo: writing everything to {} (seed {}, {} rank{})", opt_.dir.string(), opt_.seed,
              world_.size(), world_.size() == 1 ? "" : "s");
    make_corpus();
    pretrain();
    lawa();
    score();
    finetune("standard");
    finetune("flow");
    inheritune();
    evaluate_all();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    print_table(secs);
    plots();
  }

 private:
  // ---- paths and job files ------------------------------------------------------------
  fs::path data(const std::string& name) const { return opt_.dir / "data" / name; }
  fs::path run(const std::string& name) const { return opt_.dir / name; }
  fs::path heldout(const std::string& task) const { return data("heldout_" + task + ".h5"); }

  std::string model_toml(std::int64_t n_layer, const std::string& init_from) const {
    return fmt::format(
        "[model]\nn_layer = {}\nn_head = {}\nn_embd = {}\nvocab_size = 256\nblock_size = {}\ninit_from = "
        "'{}'\n",
        n_layer, p_.n_head, p_.n_embd, p_.block, init_from);
  }

  /// Writes <dir>/jobs/<name>.toml (rank 0) and parses it the way `flowlm <stage>` would.
  config::JobConfig job(const std::string& name, const std::string& toml) {
    const fs::path file = opt_.dir / "jobs" / (name + ".toml");
    if (world_.is_root()) {
      fs::create_directories(file.parent_path());
      std::ofstream(file) << "# Written by `flowlm demo`; rerun with `flowlm <stage> " << file.string()
                          << "`.\n"
                          << toml;
    }
    world_.barrier();
    return config::load_job(file);
  }

  void step(const std::string& what) { log::info("demo [{}/8] {}", ++step_, what); }

  // ---- the pipeline --------------------------------------------------------------------
  void make_corpus() {
    step("synthetic corpus: copy, reverse, sort, add (pretraining) and multiply (new task)");
    if (world_.is_root()) {
      fs::create_directories(opt_.dir / "data");
      const data::ByteTokenizer tok;
      const auto seed = opt_.seed;
      data::write_synthetic_sample_set(
          data("pretrain.h5"), data::synthetic_mixture(kOldTasks, p_.pre_samples, seed, data::Split::train),
          tok, p_.block);
      for (const auto& t : kOldTasks)
        data::write_synthetic_sample_set(
            heldout(t), data::synthetic_samples(t, p_.eval_samples, seed + 100, data::Split::heldout), tok,
            p_.block);
      data::write_synthetic_sample_set(
          heldout(kNewTask),
          data::synthetic_samples(kNewTask, p_.eval_samples, seed + 100, data::Split::heldout), tok,
          p_.block);
      // Like real fine-tuning sets, this one mixes the new task with problems the pretrained
      // model already solves (fresh old-task samples, one in four).
      auto ft = data::synthetic_samples(kNewTask, 1500, seed + 1, data::Split::train);
      const auto known = data::synthetic_mixture(kOldTasks, 125, seed + 2, data::Split::train);
      for (std::size_t i = 0; i < known.size(); ++i)
        ft.insert(ft.begin() + static_cast<std::ptrdiff_t>(i * 4), known[i]);
      data::write_synthetic_sample_set(data("multiply_train.h5"), ft, tok, p_.block);
    }
    world_.barrier();
  }

  std::string train_toml(const std::string& dir, const std::string& model, double lr, double min_lr,
                         const std::string& schedule, std::int64_t warmup, std::int64_t steps,
                         std::int64_t save_every, const std::string& finetune) const {
    return fmt::format(
        "[run]\ndir = '{}'\nseed = {}\n\n{}\n[optim]\nlr = {}\nmin_lr = {}\nschedule = '{}'\nwarmup_steps "
        "= {}\n"
        "weight_decay = 0.0\n\n[train]\nglobal_batch = 32\nmicro_batch = {}\nseq_len = {}\nmax_steps = {}\n"
        "log_every = {}\nval_every = 0\n\n[checkpoint]\nsave_every = {}\n\n[finetune]\n{}",
        dir, opt_.seed, model, lr, min_lr, schedule, warmup, std::max(1, 32 / world_.size()), p_.block, steps,
        std::max<std::int64_t>(1, steps / 10), save_every, finetune);
  }

  void pretrain() {
    step(fmt::format("pretrain a {}-layer GPT (d={}) for {} steps at a high LR, a checkpoint every {} steps",
                     p_.n_layer, p_.n_embd, p_.pre_steps, p_.save_every));
    const auto j =
        job("pretrain", train_toml(run("pretrain").string(), model_toml(p_.n_layer, ""), p_.pre_lr,
                                   p_.pre_lr / 10, "cosine", 20, p_.pre_steps, p_.save_every,
                                   fmt::format("train_set = '{}'\n", data("pretrain.h5").string())));
    train::run_training(j, world_);
    pretrained_ = run("pretrain") / io::checkpoint_name(p_.pre_steps);
  }

  void lawa() {
    step(fmt::format("LAWA: average the last {} checkpoints at every saved step", p_.lawa_k));
    const auto j = job(
        "lawa", fmt::format("[run]\ndir = '{}'\n\n[average]\nmode = 'lawa'\ninputs = ['{}']\n"
                            "output_dir = '{}'\nk = {}\n",
                            run("lawa").string(), run("pretrain").string(), run("lawa").string(), p_.lawa_k));
    train::run_average(j, world_);
  }

  void score() {
    step("score the multiply fine-tuning set with the pretrained model (FLOW weights)");
    const auto j =
        job("score", fmt::format("[run]\ndir = '{}'\n\n[score]\ncheckpoint = '{}'\nsample_set = '{}'\n"
                                 "output = '{}'\n\n[flow]\ntau = 'median'\nnormalize = 'mean'\n",
                                 run("score").string(), pretrained_.string(),
                                 data("multiply_train.h5").string(), scores_file().string()));
    train::score_samples(j.score.checkpoint, j.score.sample_set, j.flow, j.score.batch, j.score.output,
                         world_);
  }

  fs::path scores_file() const { return run("score") / "scores.h5"; }

  void finetune(const std::string& method) {
    step(fmt::format("fine-tune on multiply, {} ({} steps, constant LR {})", method, p_.ft_steps, p_.ft_lr));
    const auto j =
        job("finetune_" + method,
            train_toml(run("finetune_" + method).string(), model_toml(p_.n_layer, pretrained_.string()),
                       p_.ft_lr, p_.ft_lr, "constant", 0, p_.ft_steps, p_.ft_steps / 5,
                       fmt::format("method = '{}'\ntrain_set = '{}'\nscores = '{}'\n", method,
                                   data("multiply_train.h5").string(), scores_file().string())));
    train::run_training(j, world_);
  }

  void inheritune() {
    const std::int64_t k = std::max<std::int64_t>(1, p_.n_layer / 2);
    step(fmt::format("Inheritune: inherit {} of {} blocks, train {} steps; the same shape from random init",
                     k, p_.n_layer, p_.small_steps));
    const fs::path inherited = run("inherit") / "inherited.h5";
    const auto ij =
        job("inherit",
            fmt::format("[run]\ndir = '{}'\nseed = {}\n\n[inherit]\nfrom = '{}'\noutput = "
                        "'{}'\nlayers = {}\n",
                        run("inherit").string(), opt_.seed, pretrained_.string(), inherited.string(), k));
    train::run_inherit(ij, world_);
    const std::string data_keys = fmt::format("train_set = '{}'\n", data("pretrain.h5").string());
    for (const auto& [name, init] : {std::pair{std::string("small_inherited"), inherited.string()},
                                     std::pair{std::string("small_random"), std::string()}})
      train::run_training(
          job(name, train_toml(run(name).string(), model_toml(k, init), p_.pre_lr, p_.pre_lr / 10, "cosine",
                               20, p_.small_steps, p_.small_steps, data_keys)),
          world_);
  }

  void evaluate_all() {
    step("evaluate every model on the held-out sets (answer loss, exact-match accuracy)");
    std::vector<std::string> sets;
    for (const auto& t : kOldTasks) sets.push_back(heldout(t).string());
    sets.push_back(heldout(kNewTask).string());
    std::vector<std::string> ckpts = {pretrained_.string(),
                                      (run("finetune_standard") / io::checkpoint_name(p_.ft_steps)).string(),
                                      (run("finetune_flow") / io::checkpoint_name(p_.ft_steps)).string(),
                                      (run("small_inherited") / io::checkpoint_name(p_.small_steps)).string(),
                                      (run("small_random") / io::checkpoint_name(p_.small_steps)).string()};
    eval_rows_ = eval("eval_models", ckpts, sets);
    // LAWA vs raw along the run: the old tasks' held-out sets at every window end.
    std::vector<std::string> old_sets(sets.begin(), sets.end() - 1);
    eval_rows_lawa_ =
        eval("eval_lawa", {run("pretrain").string(), (run("lawa") / "*.h5").string()}, old_sets);
  }

  std::vector<nlohmann::json> eval(const std::string& name, const std::vector<std::string>& ckpts,
                                   const std::vector<std::string>& sets) {
    nlohmann::json c = ckpts, s = sets;
    const auto j =
        job(name, fmt::format("[run]\ndir = '{}'\n\n[eval]\ncheckpoints = {}\nsets = {}\noutput = '{}'\n"
                              "max_samples = {}\nmicro_batch = 32\n",
                              run(name).string(), c.dump(), s.dump(), (run(name) / "eval.jsonl").string(),
                              p_.eval_samples));
    run_eval(StageContext{j, opt_.dir / "jobs" / (name + ".toml"), world_});
    std::vector<nlohmann::json> rows;
    std::ifstream in(run(name) / "eval.jsonl");
    for (std::string line; std::getline(in, line);)
      if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
    return rows;
  }

  // ---- the report ----------------------------------------------------------------------
  struct Scores {
    std::map<std::string, double> acc, loss;  // by task
    double old_acc() const {
      double s = 0;
      for (const auto& t : kOldTasks) s += acc.at(t);
      return s / static_cast<double>(kOldTasks.size());
    }
    double old_loss() const {
      double s = 0;
      for (const auto& t : kOldTasks) s += loss.at(t);
      return s / static_cast<double>(kOldTasks.size());
    }
  };

  static std::string task_of(const std::string& set) {
    const std::string f = fs::path(set).stem().string();  // heldout_<task>
    return f.substr(f.find('_') + 1);
  }

  static std::map<std::string, Scores> by_checkpoint(const std::vector<nlohmann::json>& rows) {
    std::map<std::string, Scores> out;
    for (const auto& r : rows) {
      auto& s = out[r.at("checkpoint").get<std::string>()];
      const std::string t = task_of(r.at("set").get<std::string>());
      s.acc[t] = r.at("accuracy").get<double>();
      s.loss[t] = r.at("answer_loss").get<double>();
    }
    return out;
  }

  void print_table(double secs) {
    if (!world_.is_root()) return;
    const auto m = by_checkpoint(eval_rows_);
    auto get = [&](const fs::path& p) { return m.at(p.string()); };
    const Scores pre = get(pretrained_),
                 std_ft = get(run("finetune_standard") / io::checkpoint_name(p_.ft_steps)),
                 flow_ft = get(run("finetune_flow") / io::checkpoint_name(p_.ft_steps)),
                 inh = get(run("small_inherited") / io::checkpoint_name(p_.small_steps)),
                 rnd = get(run("small_random") / io::checkpoint_name(p_.small_steps));
    std::string t;
    t += fmt::format("\n== flowlm demo (seed {}, {} rank{}, {:.0f} s) ==\n\n", opt_.seed, world_.size(),
                     world_.size() == 1 ? "" : "s", secs);
    t += "FLOW vs standard fine-tuning on the new task (multiply): exact-match accuracy on held-out sets\n";
    t += fmt::format("  {:<14} {:>9} {:>10}   {:>6} {:>8} {:>6} {:>6}\n", "model", "multiply", "old tasks",
                     "copy", "reverse", "sort", "add");
    auto acc_row = [&](const std::string& name, const Scores& s) {
      t += fmt::format("  {:<14} {:>8.1f}% {:>9.1f}%   {:>5.1f}% {:>7.1f}% {:>5.1f}% {:>5.1f}%\n", name,
                       100 * s.acc.at(kNewTask), 100 * s.old_acc(), 100 * s.acc.at("copy"),
                       100 * s.acc.at("reverse"), 100 * s.acc.at("sort"), 100 * s.acc.at("add"));
    };
    acc_row("pretrained", pre);
    acc_row("standard FT", std_ft);
    acc_row("FLOW FT", flow_ft);
    t += fmt::format("  FLOW retains {:+.1f} points more of the old tasks than standard fine-tuning.\n\n",
                     100 * (flow_ft.old_acc() - std_ft.old_acc()));

    // LAWA vs raw: pair each averaged checkpoint with the raw checkpoint of the same step.
    std::map<std::int64_t, double> raw, avg;
    for (const auto& [ck, s] : by_checkpoint(eval_rows_lawa_)) {
      const auto step = io::CheckpointReader(ck).meta().step;
      (fs::path(ck).parent_path() == run("lawa") ? avg : raw)[step] = s.old_loss();
    }
    t += fmt::format("LAWA (last {} checkpoints, {} steps apart) vs the raw checkpoint at the same step:\n",
                     p_.lawa_k, p_.save_every);
    t += "  held-out answer loss on the old tasks (lower is better)\n";
    t += fmt::format("  {:>6} {:>9} {:>9} {:>8}\n", "step", "raw", "LAWA", "delta");
    int wins = 0, rows = 0;
    nlohmann::json lawa_json = nlohmann::json::array();
    for (const auto& [step, a] : avg) {
      if (!raw.count(step)) continue;
      ++rows;
      wins += a < raw[step];
      lawa_json.push_back({{"step", step}, {"raw", raw[step]}, {"lawa", a}});
      if (rows % std::max<std::size_t>(1, avg.size() / 8) == 1 || step == avg.rbegin()->first)
        t += fmt::format("  {:>6} {:>9.4f} {:>9.4f} {:>+8.4f}\n", step, raw[step], a, a - raw[step]);
    }
    t += fmt::format("  LAWA is lower at {} of {} window ends.\n\n", wins, rows);
    std::ofstream(opt_.dir / "lawa_vs_raw.json") << lawa_json.dump(1) << '\n';

    t += fmt::format(
        "Inheritune: {} of {} blocks inherited vs the same shape from random init, {} steps each\n",
        std::max<std::int64_t>(1, p_.n_layer / 2), p_.n_layer, p_.small_steps);
    t += fmt::format("  {:<14} {:>12} {:>14}\n", "init", "answer loss", "old-task acc");
    t += fmt::format("  {:<14} {:>12.4f} {:>13.1f}%\n", "inherited", inh.old_loss(), 100 * inh.old_acc());
    t += fmt::format("  {:<14} {:>12.4f} {:>13.1f}%\n", "random", rnd.old_loss(), 100 * rnd.old_acc());
    std::fputs(t.c_str(), stdout);
    std::ofstream(opt_.dir / "results.txt") << t;
    std::fflush(stdout);
  }

  void plots() {
    if (!world_.is_root()) return;
    const char* py_env = std::getenv("FLOWLM_PYTHON");
    const std::string py =
        py_env ? py_env : (fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3");
    const char* an_env = std::getenv("FLOWLM_ANALYSIS_DIR");
    const fs::path analysis = an_env ? fs::path(an_env) : fs::path(FLOWLM_SOURCE_DIR) / "analysis";
    const fs::path script = analysis / "plot.py";
    if (!fs::exists(script)) {
      log::warn("demo: {} not found (set FLOWLM_ANALYSIS_DIR); no plots", script.string());
      return;
    }
    const std::string d = opt_.dir.string();
    const std::string cmd = fmt::format("'{}' '{}' demo '{}'", py, script.string(), d);
    log::info("demo: results in {}", (opt_.dir / "results.txt").string());
    log::info("demo: plotting: {}", cmd);
    if (std::system(cmd.c_str()) != 0)
      log::warn(
          "demo: plotting failed (needs python3 with h5py, numpy, matplotlib); the results above stand");
  }

  DemoOptions opt_;
  comm::Communicator world_;
  Plan p_;
  int step_ = 0;
  fs::path pretrained_;
  std::vector<nlohmann::json> eval_rows_, eval_rows_lawa_;
};

}  // namespace

void run_demo(const DemoOptions& opt, const comm::Communicator& world) { Demo(opt, world).run(); }

}  // namespace flowlm::stages
