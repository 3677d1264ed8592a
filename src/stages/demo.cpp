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

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/stats.hpp"
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

/// The demo's sizes, in one place. Each fine-tuning seed draws its own fine-tuning set and
/// sample order (the effect of FLOW varies more between fine-tuning sets than between
/// orders), and both methods see the same ones.
struct Plan {
  std::int64_t n_layer = 2, n_embd = 64, n_head = 4, block = 32;
  std::int64_t pre_samples = 2000;  // per old task
  std::int64_t pre_steps = 2000, save_every = 25;
  double pre_lr = 5e-3;
  std::int64_t ft_new = 1500, ft_known_every = 4;  // 1500 multiply + 500 old-task samples
  std::int64_t ft_steps = 150;
  double ft_lr = 1e-3;
  std::vector<std::int64_t> ft_seeds = {1, 2, 3, 4};  // fine-tuning sets and orders
  std::int64_t eval_samples = 400;                    // per held-out set
  std::int64_t lawa_eval_samples = 100;               // per set and checkpoint (160 checkpoints)
  std::int64_t lawa_k = 5;
  std::int64_t small_steps = 300;  // Inheritune vs random init
  std::int64_t task_items = 200;   // per benchmark task of the forgetting table
};

/// The console of a pipeline run: one line per step, redrawn in place with a bar, the
/// percentage and the ETA on a terminal, printed once when the step ends otherwise (batch
/// logs stay short). Only rank 0 prints.
class Console {
 public:
  Console(int steps, bool root) : steps_(steps), root_(root), tty_(interactive()) {}

  void begin(const std::string& what) {
    ++step_;
    what_ = what;
    start_ = last_draw_ = Clock::now();
    if (tty_ && root_) draw(0.0);
  }
  /// Fraction of the current step done, 0..1.
  void update(double fraction) {
    if (!tty_ || !root_) return;
    const auto now = Clock::now();
    if (std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
    last_draw_ = now;
    draw(std::clamp(fraction, 0.0, 1.0));
  }
  void end() {
    if (!root_) return;
    const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
    std::printf("%s  [%d/%d] %-66s done %6.1f s%s\n", tty_ ? "\r" : "", step_, steps_, what_.c_str(), secs,
                tty_ ? "\033[K" : "");
    std::fflush(stdout);
  }
  void line(const std::string& text) const {
    if (!root_) return;
    std::printf("%s\n", text.c_str());
    std::fflush(stdout);
  }

 private:
  using Clock = std::chrono::steady_clock;
  /// A terminal that a person watches: not under a launcher (mpirun hands ranks a pseudo
  /// terminal that it copies into the job's log).
  static bool interactive() {
    for (const char* launcher : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_ID"})
      if (std::getenv(launcher)) return false;
    return isatty(fileno(stdout)) != 0;
  }
  void draw(double f) {
    const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
    const int width = 20, filled = static_cast<int>(f * width);
    const std::string bar = std::string(static_cast<std::size_t>(filled), '#') +
                            std::string(static_cast<std::size_t>(width - filled), '.');
    const std::string eta = f > 0.02 ? log::format_duration(secs * (1 - f) / f) : std::string("?");
    std::printf("\r  [%d/%d] %-66s [%s] %3.0f%% ETA %s\033[K", step_, steps_, what_.c_str(), bar.c_str(),
                100 * f, eta.c_str());
    std::fflush(stdout);
  }

  int steps_, step_ = 0;
  bool root_, tty_;
  std::string what_;
  Clock::time_point start_, last_draw_;
};

class Demo {
 public:
  Demo(const DemoOptions& opt, const comm::Communicator& world)
      : opt_(opt), world_(world), console_(8, world.is_root()) {}

  void run() {
    const auto t0 = std::chrono::steady_clock::now();
    console_.line(fmt::format("flowlm demo: seed {}, {} rank{}, writing to {} (each step's log in {})",
                              opt_.seed, world_.size(), world_.size() == 1 ? "" : "s", opt_.dir.string(),
                              (opt_.dir / "logs").string()));
    step("corpus", "synthetic corpus: copy, reverse, sort, add; new task multiply", [&] { make_corpus(); });
    step("pretrain",
         fmt::format("pretrain a {}-layer GPT, {} steps, a checkpoint every {}", p_.n_layer, p_.pre_steps,
                     p_.save_every),
         [&] { pretrain(); });
    step("lawa", fmt::format("LAWA: average the last {} checkpoints at every saved step", p_.lawa_k),
         [&] { lawa(); });
    step("score",
         fmt::format("score the {} fine-tuning sets with the pretrained model (FLOW)", p_.ft_seeds.size()),
         [&] { score(); });
    for (const std::string method : {"standard", "flow"})
      step("finetune_" + method,
           fmt::format("fine-tune on multiply, {} ({} seeds x {} steps)", method == "flow" ? "FLOW" : method,
                       p_.ft_seeds.size(), p_.ft_steps),
           [&] { finetune(method); });
    step("inheritune",
         fmt::format("Inheritune: inherit {} of {} blocks; same shape from random init", small_layers(),
                     p_.n_layer),
         [&] { inheritune(); });
    step("eval", "evaluate every model on the held-out sets; the forgetting table", [&] { evaluate_all(); });
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    print_table(secs);
    plots();
  }

 private:
  // ---- paths and job files ------------------------------------------------------------
  fs::path data(const std::string& name) const { return opt_.dir / "data" / name; }
  fs::path run(const std::string& name) const { return opt_.dir / name; }
  fs::path heldout(const std::string& task) const { return data("heldout_" + task + ".h5"); }
  fs::path finetuned(const std::string& method, std::int64_t seed) const {
    return run("finetune_" + method) / fmt::format("seed{}", seed) / io::checkpoint_name(p_.ft_steps);
  }
  std::int64_t small_layers() const { return std::max<std::int64_t>(1, p_.n_layer / 2); }
  fs::path task_file(const std::string& task, const std::string& ext) const {
    return data("task_" + task + ext);
  }
  static std::vector<std::string> all_tasks() {
    std::vector<std::string> t = kOldTasks;
    t.push_back(kNewTask);
    return t;
  }

  /// Runs one pipeline step with its log in <dir>/logs/<name>.log and a progress line.
  template <class F>
  void step(const std::string& name, const std::string& what, F body) {
    console_.begin(what);
    {
      const log::FileScope to_file(opt_.dir / "logs" / (name + ".log"));
      sub_runs_ = 1;
      sub_run_ = 0;
      const auto previous = log::set_progress_hook([this](double f) {
        console_.update((static_cast<double>(sub_run_) + f) / static_cast<double>(sub_runs_));
      });
      try {
        body();
      } catch (...) {
        log::set_progress_hook(previous);
        if (world_.is_root()) std::printf("\n");
        throw;
      }
      log::set_progress_hook(previous);
    }
    console_.end();
  }
  /// Within a step that runs `n` trainings one after the other: the progress bar spans all.
  void sub_run(int i, int n) {
    sub_run_ = i;
    sub_runs_ = n;
  }

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

  // ---- the pipeline --------------------------------------------------------------------
  void make_corpus() {
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
      // The same held-out problems as benchmark tasks (generate, exact match), for the forgetting table.
      for (const auto& t : all_tasks()) {
        std::ofstream items(task_file(t, ".jsonl"));
        for (const auto& pa : data::synthetic_samples(t, p_.task_items, seed + 100, data::Split::heldout))
          items << nlohmann::json{{"context", pa.prompt}, {"target", pa.answer}}.dump() << '\n';
        std::ofstream(task_file(t, ".toml"))
            << "# The demo's held-out " << t << " problems, greedy decoding scored by exact match.\n"
            << "name = \"" << t << "\"\nkind = \"generate\"\ndata = \"task_" << t
            << ".jsonl\"\n[generation]\nmax_new_tokens = " << p_.block / 2 << "\n";
      }
      // Like real fine-tuning sets, these mix the new task with problems the pretrained
      // model already solves (fresh old-task samples, one in four).
      for (const auto k : p_.ft_seeds)
        data::write_synthetic_sample_set(
            ft_set(k),
            data::synthetic_finetune_set(kNewTask, p_.ft_new, kOldTasks, p_.ft_known_every,
                                         1000 * seed + static_cast<std::uint64_t>(k)),
            tok, p_.block);
    }
    world_.barrier();
  }

  std::string train_toml(const std::string& dir, std::int64_t seed, const std::string& model, double lr,
                         double min_lr, const std::string& schedule, std::int64_t warmup, std::int64_t steps,
                         std::int64_t save_every, const std::string& finetune) const {
    return fmt::format(
        "[run]\ndir = '{}'\nseed = {}\n\n{}\n[optim]\nlr = {}\nmin_lr = {}\nschedule = '{}'\nwarmup_steps "
        "= {}\n"
        "weight_decay = 0.0\n\n[train]\nglobal_batch = 32\nmicro_batch = {}\nseq_len = {}\nmax_steps = {}\n"
        "log_every = {}\nval_every = 0\n\n[checkpoint]\nsave_every = {}\n\n[finetune]\n{}",
        dir, seed, model, lr, min_lr, schedule, warmup, std::max(1, 32 / world_.size()), p_.block, steps,
        std::max<std::int64_t>(1, steps / 10), save_every, finetune);
  }

  void pretrain() {
    const auto j =
        job("pretrain",
            train_toml(run("pretrain").string(), static_cast<std::int64_t>(opt_.seed),
                       model_toml(p_.n_layer, ""), p_.pre_lr, p_.pre_lr / 10, "cosine", 20, p_.pre_steps,
                       p_.save_every, fmt::format("train_set = '{}'\n", data("pretrain.h5").string())));
    train::run_training(j, world_);
    pretrained_ = run("pretrain") / io::checkpoint_name(p_.pre_steps);
  }

  void lawa() {
    const auto j = job(
        "lawa", fmt::format("[run]\ndir = '{}'\n\n[average]\nmode = 'lawa'\ninputs = ['{}']\n"
                            "output_dir = '{}'\nk = {}\n",
                            run("lawa").string(), run("pretrain").string(), run("lawa").string(), p_.lawa_k));
    train::run_average(j, world_);
  }

  void score() {
    for (const auto k : p_.ft_seeds) {
      const auto j = job(fmt::format("score_seed{}", k),
                         fmt::format("[run]\ndir = '{}'\n\n[score]\ncheckpoint = '{}'\nsample_set = '{}'\n"
                                     "output = '{}'\n\n[flow]\ntau = 'median'\nnormalize = 'mean'\n",
                                     scores_file(k).parent_path().string(), pretrained_.string(),
                                     ft_set(k).string(), scores_file(k).string()));
      train::score_samples(j.score.checkpoint, j.score.sample_set, j.flow, j.score.batch, j.score.output,
                           world_);
    }
  }

  fs::path ft_set(std::int64_t seed) const { return data(fmt::format("multiply_train_seed{}.h5", seed)); }
  fs::path scores_file(std::int64_t seed) const {
    return run("score") / fmt::format("seed{}", seed) / "scores.h5";
  }

  void finetune(const std::string& method) {
    for (std::size_t i = 0; i < p_.ft_seeds.size(); ++i) {
      sub_run(static_cast<int>(i), static_cast<int>(p_.ft_seeds.size()));
      const std::int64_t seed = p_.ft_seeds[i];
      const auto j = job(
          fmt::format("finetune_{}_seed{}", method, seed),
          train_toml(finetuned(method, seed).parent_path().string(), seed,
                     model_toml(p_.n_layer, pretrained_.string()), p_.ft_lr, p_.ft_lr, "constant", 0,
                     p_.ft_steps, p_.ft_steps / 5,
                     fmt::format("method = '{}'\ntrain_set = '{}'\n{}", method, ft_set(seed).string(),
                                 method == "flow" ? fmt::format("scores = '{}'\n", scores_file(seed).string())
                                                  : std::string())));
      train::run_training(j, world_);
    }
  }

  void inheritune() {
    const std::int64_t k = small_layers();
    const fs::path inherited = run("inherit") / "inherited.h5";
    const auto ij =
        job("inherit",
            fmt::format("[run]\ndir = '{}'\nseed = {}\n\n[inherit]\nfrom = '{}'\noutput = "
                        "'{}'\nlayers = {}\n",
                        run("inherit").string(), opt_.seed, pretrained_.string(), inherited.string(), k));
    train::run_inherit(ij, world_);
    const std::string data_keys = fmt::format("train_set = '{}'\n", data("pretrain.h5").string());
    int i = 0;
    for (const auto& [name, init] : {std::pair{std::string("small_inherited"), inherited.string()},
                                     std::pair{std::string("small_random"), std::string()}}) {
      sub_run(i++, 2);
      train::run_training(job(name, train_toml(run(name).string(), static_cast<std::int64_t>(opt_.seed),
                                               model_toml(k, init), p_.pre_lr, p_.pre_lr / 10, "cosine", 20,
                                               p_.small_steps, p_.small_steps, data_keys)),
                          world_);
    }
  }

  void evaluate_all() {
    std::vector<std::string> sets;
    for (const auto& t : kOldTasks) sets.push_back(heldout(t).string());
    sets.push_back(heldout(kNewTask).string());
    std::vector<std::string> ckpts = {pretrained_.string()};
    for (const std::string method : {"standard", "flow"})
      for (const auto seed : p_.ft_seeds) ckpts.push_back(finetuned(method, seed).string());
    ckpts.push_back((run("small_inherited") / io::checkpoint_name(p_.small_steps)).string());
    ckpts.push_back((run("small_random") / io::checkpoint_name(p_.small_steps)).string());
    sub_run(0, 4);
    eval_rows_ = eval("eval_models", ckpts, sets, p_.eval_samples);
    // LAWA vs raw along the run: the old tasks' held-out sets at every window end.
    sub_run(1, 4);
    std::vector<std::string> old_sets(sets.begin(), sets.end() - 1);
    eval_rows_lawa_ = eval("eval_lawa", {run("pretrain").string(), (run("lawa") / "*.h5").string()}, old_sets,
                           p_.lawa_eval_samples);
    // The forgetting table: the benchmark tasks on the pretrained model vs each method's first
    // fine-tuned model, paired over the tasks' problems.
    std::vector<std::string> tasks;
    for (const auto& t : all_tasks()) tasks.push_back(task_file(t, ".toml").string());
    for (const std::string method : {"standard", "flow"}) {
      sub_run(method == "standard" ? 2 : 3, 4);
      nlohmann::json c =
          std::vector<std::string>{pretrained_.string(), finetuned(method, p_.ft_seeds[0]).string()};
      const std::string name = "forgetting_" + method;
      const auto j =
          job(name, fmt::format("[run]\ndir = '{}'\n\n[eval]\ncompare = {}\ntasks = {}\noutput = '{}'\n"
                                "micro_batch = 64\nadd_bos = true\n",
                                run(name).string(), c.dump(), nlohmann::json(tasks).dump(),
                                (run(name) / "eval.jsonl").string()));
      run_eval(StageContext{j, opt_.dir / "jobs" / (name + ".toml"), world_});
      std::ifstream in(run(name) / "eval.jsonl");
      for (std::string line; std::getline(in, line);) {
        if (line.empty()) continue;
        const auto row = nlohmann::json::parse(line);
        if (row.value("kind", "") == "forgetting") forgetting_[method].push_back(row);
      }
    }
  }

  std::vector<nlohmann::json> eval(const std::string& name, const std::vector<std::string>& ckpts,
                                   const std::vector<std::string>& sets, std::int64_t max_samples) {
    nlohmann::json c = ckpts, s = sets;
    const auto j =
        job(name, fmt::format("[run]\ndir = '{}'\n\n[eval]\ncheckpoints = {}\nsets = {}\noutput = '{}'\n"
                              "max_samples = {}\nmicro_batch = 64\n",
                              run(name).string(), c.dump(), s.dump(), (run(name) / "eval.jsonl").string(),
                              max_samples));
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
                 inh = get(run("small_inherited") / io::checkpoint_name(p_.small_steps)),
                 rnd = get(run("small_random") / io::checkpoint_name(p_.small_steps));
    // Per fine-tuning seed, each method's scores, and the paired differences.
    std::map<std::string, std::vector<Scores>> ft;
    for (const std::string method : {"standard", "flow"})
      for (const auto seed : p_.ft_seeds) ft[method].push_back(get(finetuned(method, seed)));
    auto over_seeds = [&](const std::string& method, auto metric) {
      std::vector<double> v;
      for (const auto& s : ft.at(method)) v.push_back(100 * metric(s));
      return mean_se(v);
    };
    auto paired = [&](auto metric) {
      std::vector<double> v;
      for (std::size_t i = 0; i < p_.ft_seeds.size(); ++i)
        v.push_back(100 * (metric(ft.at("flow")[i]) - metric(ft.at("standard")[i])));
      return mean_se(v);
    };
    auto task_acc = [](const std::string& t) { return [t](const Scores& s) { return s.acc.at(t); }; };
    auto old_acc = [](const Scores& s) { return s.old_acc(); };

    std::string t;
    t += fmt::format("\n== flowlm demo (seed {}, {} rank{}, {:.0f} s) ==\n\n", opt_.seed, world_.size(),
                     world_.size() == 1 ? "" : "s", secs);
    t += fmt::format(
        "FLOW vs standard fine-tuning on the new task (multiply), {} fine-tuning sets and orders each:\n"
        "exact-match accuracy on held-out sets ({} problems per task), mean +- standard error over the "
        "seeds\n",
        p_.ft_seeds.size(), p_.eval_samples);
    t += fmt::format("  {:<16} {:>13} {:>13}   {:>6} {:>8} {:>6} {:>6}   (%)\n", "model", "multiply",
                     "old tasks", "copy", "reverse", "sort", "add");
    auto pm = [](const MeanSe& x) { return fmt::format("{:.1f} +- {:.1f}", x.mean, x.se); };
    t += fmt::format("  {:<16} {:>13} {:>13}   {:>6.1f} {:>8.1f} {:>6.1f} {:>6.1f}\n", "pretrained",
                     fmt::format("{:.1f}", 100 * pre.acc.at(kNewTask)),
                     fmt::format("{:.1f}", 100 * pre.old_acc()), 100 * pre.acc.at("copy"),
                     100 * pre.acc.at("reverse"), 100 * pre.acc.at("sort"), 100 * pre.acc.at("add"));
    for (const auto& [method, label] :
         {std::pair{std::string("standard"), "standard FT"}, std::pair{std::string("flow"), "FLOW FT"}}) {
      t +=
          fmt::format("  {:<16} {:>13} {:>13}   {:>6.1f} {:>8.1f} {:>6.1f} {:>6.1f}\n", label,
                      pm(over_seeds(method, task_acc(kNewTask))), pm(over_seeds(method, old_acc)),
                      over_seeds(method, task_acc("copy")).mean, over_seeds(method, task_acc("reverse")).mean,
                      over_seeds(method, task_acc("sort")).mean, over_seeds(method, task_acc("add")).mean);
    }
    const MeanSe d_old = paired(old_acc), d_new = paired(task_acc(kNewTask));
    const MeanSe forgot = [&] {
      std::vector<double> v;
      for (const auto& s : ft.at("standard")) v.push_back(100 * (pre.old_acc() - s.old_acc()));
      return mean_se(v);
    }();
    t += fmt::format("  {:<16} {:>13} {:>13}   (paired by seed, points)\n", "FLOW - standard", pm(d_new),
                     pm(d_old));
    const bool flow_wins = d_old.mean > 2 * d_old.se && d_old.mean > 0;
    t += fmt::format(
        "  Standard fine-tuning forgets {:.1f} points of the old tasks; FLOW keeps {:+.1f} +- {:.1f} points "
        "more\n"
        "  ({}).\n\n",
        forgot.mean, d_old.mean, d_old.se,
        flow_wins ? "more than twice its standard error: FLOW forgets less"
                  : "not more than twice its standard error: no clear difference on this run");

    // LAWA vs raw: pair each averaged checkpoint with the raw checkpoint of the same step.
    std::map<std::int64_t, double> raw, avg;
    for (const auto& [ck, s] : by_checkpoint(eval_rows_lawa_)) {
      const auto step = io::CheckpointReader(ck).meta().step;
      (fs::path(ck).parent_path() == run("lawa") ? avg : raw)[step] = s.old_loss();
    }
    t += fmt::format("LAWA (last {} checkpoints, {} steps apart) vs the raw checkpoint at the same step:\n",
                     p_.lawa_k, p_.save_every);
    t += fmt::format("  held-out answer loss on the old tasks ({} problems per task; lower is better)\n",
                     p_.lawa_eval_samples);
    t += fmt::format("  {:>6} {:>9} {:>9} {:>8}\n", "step", "raw", "LAWA", "delta");
    int wins = 0, rows = 0;
    std::vector<double> late;  // LAWA - raw over the second half of the run
    nlohmann::json lawa_json = nlohmann::json::array();
    for (const auto& [step, a] : avg) {
      if (!raw.count(step)) continue;
      ++rows;
      wins += a < raw[step];
      if (2 * step > p_.pre_steps) late.push_back(a - raw[step]);
      lawa_json.push_back({{"step", step}, {"raw", raw[step]}, {"lawa", a}});
      if (rows % std::max<std::size_t>(1, avg.size() / 8) == 1 || step == avg.rbegin()->first)
        t += fmt::format("  {:>6} {:>9.4f} {:>9.4f} {:>+8.4f}\n", step, raw[step], a, a - raw[step]);
    }
    const MeanSe lawa_late = mean_se(late);
    t += fmt::format(
        "  LAWA is lower at {} of {} window ends; over the second half of the run LAWA - raw = {:+.4f} +- "
        "{:.4f}.\n\n",
        wins, rows, lawa_late.mean, lawa_late.se);
    std::ofstream(opt_.dir / "lawa_vs_raw.json") << lawa_json.dump(1) << '\n';

    t += fmt::format(
        "Forgetting table (flowlm eval --compare; generate tasks, {} held-out problems each, exact match):\n",
        p_.task_items);
    t += fmt::format("  {:<10} {:>11} {:>22} {:>22}   (%, delta +- paired se)\n", "task", "pretrained",
                     "standard FT (seed " + std::to_string(p_.ft_seeds[0]) + ")",
                     "FLOW FT (seed " + std::to_string(p_.ft_seeds[0]) + ")");
    for (std::size_t i = 0; i < forgetting_["standard"].size() && i < forgetting_["flow"].size(); ++i) {
      const auto& a = forgetting_["standard"][i];
      const auto& b = forgetting_["flow"][i];
      auto cell = [](const nlohmann::json& r) {
        return fmt::format("{:.1f} ({:+.1f} +- {:.1f})", 100 * r.value("tuned_value", 0.0),
                           100 * r.value("delta", 0.0), 100 * r.value("delta_stderr", 0.0));
      };
      t += fmt::format("  {:<10} {:>11.1f} {:>22} {:>22}\n", a.at("task").get<std::string>(),
                       100 * a.value("base_value", 0.0), cell(a), cell(b));
    }
    t += "\n";
    t += fmt::format(
        "Inheritune: {} of {} blocks inherited vs the same shape from random init, {} steps each\n",
        small_layers(), p_.n_layer, p_.small_steps);
    t += fmt::format("  {:<14} {:>12} {:>14}\n", "init", "answer loss", "old-task acc");
    t += fmt::format("  {:<14} {:>12.4f} {:>13.1f}%\n", "inherited", inh.old_loss(), 100 * inh.old_acc());
    t += fmt::format("  {:<14} {:>12.4f} {:>13.1f}%\n", "random", rnd.old_loss(), 100 * rnd.old_acc());
    std::fputs(t.c_str(), stdout);
    std::ofstream(opt_.dir / "results.txt") << t;
    // The verdicts as numbers, for scripts and tests.
    const nlohmann::json summary = {{"seed", opt_.seed},
                                    {"ranks", world_.size()},
                                    {"flow_minus_standard_old", {{"mean", d_old.mean}, {"se", d_old.se}}},
                                    {"flow_minus_standard_new", {{"mean", d_new.mean}, {"se", d_new.se}}},
                                    {"standard_forgets", {{"mean", forgot.mean}, {"se", forgot.se}}},
                                    {"lawa_minus_raw_late", {{"mean", lawa_late.mean}, {"se", lawa_late.se}}},
                                    {"lawa_wins", wins},
                                    {"lawa_windows", rows},
                                    {"inherited_answer_loss", inh.old_loss()},
                                    {"random_answer_loss", rnd.old_loss()}};
    nlohmann::json with_table = summary;
    for (const auto& [method, table] : forgetting_)
      for (const auto& r : table)
        with_table["forgetting"][method].push_back({{"task", r.at("task")},
                                                    {"base", r.at("base_value")},
                                                    {"tuned", r.at("tuned_value")},
                                                    {"delta", r.at("delta")},
                                                    {"se", r.at("delta_stderr")}});
    std::ofstream(opt_.dir / "results.json") << with_table.dump(1) << '\n';
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
    std::printf("\nResults: %s (numbers: %s); logs of every step: %s\n", (opt_.dir / "results.txt").c_str(),
                (opt_.dir / "results.json").c_str(), (opt_.dir / "logs").c_str());
    if (!fs::exists(script)) {
      log::warn("demo: {} not found (set FLOWLM_ANALYSIS_DIR); no plots", script.string());
      return;
    }
    const fs::path plot_log = opt_.dir / "logs" / "plots.log";
    const std::string cmd = fmt::format("'{}' '{}' demo '{}' > '{}' 2>&1", py, script.string(),
                                        opt_.dir.string(), plot_log.string());
    if (std::system(cmd.c_str()) != 0) {
      log::warn(
          "demo: plotting failed (needs python3 with h5py, numpy, matplotlib; see {}); the results above "
          "stand",
          plot_log.string());
      return;
    }
    std::printf("Plots: %s/{loss,drift,weights,lawa}.png\n", (opt_.dir / "plots").c_str());
    std::fflush(stdout);
  }

  DemoOptions opt_;
  comm::Communicator world_;
  Plan p_;
  Console console_;
  int sub_run_ = 0, sub_runs_ = 1;
  fs::path pretrained_;
  std::vector<nlohmann::json> eval_rows_, eval_rows_lawa_;
  std::map<std::string, std::vector<nlohmann::json>> forgetting_;  // by method: eval's "forgetting" rows
};

}  // namespace

void run_demo(const DemoOptions& opt, const comm::Communicator& world) { Demo(opt, world).run(); }

}  // namespace flowlm::stages
