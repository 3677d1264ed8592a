// `flowlm eval job.toml`: every checkpoint x (every eval set and every benchmark task) -> eval.jsonl
// and a table. Token shards give the mean next-token loss; sample sets the mean answer loss and
// the exact match of greedy decoding; tasks lm-eval's metrics with standard errors (src/eval).
// With eval.compare (or --compare base.h5 tuned.h5) it prints the forgetting table: per task and
// metric base, tuned, the difference and its standard error paired over items. Work is sharded
// across ranks; the numbers do not depend on the rank count.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/sampleset.hpp"
#include "data/shard.hpp"
#include "eval/engine.hpp"
#include "eval/metrics.hpp"
#include "eval/run.hpp"
#include "eval/task.hpp"
#include "io/checkpoint.hpp"
#include "stages/stage.hpp"
#include "train/evaluate.hpp"

namespace flowlm::stages {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool is_sample_set(const std::string& spec) {
  return spec.size() > 3 && spec.compare(spec.size() - 3, 3, ".h5") == 0;
}

json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::string show(double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : std::string("-"); }

/// Metrics of one (checkpoint, task or set), kept for the forgetting table.
using Results = std::map<std::string, std::vector<eval::Metric>>;

/// The per-item records of sample sets when samples_dir is set: the greedy answer decoded with the
/// KV cache next to the reference answer and the one-pass verdict.
std::vector<json> sample_records(model::Transformer& gpt, const data::SampleSet& set, std::int64_t first,
                                 const train::SampleEval& r, index_t batch, const comm::Communicator& world) {
  std::unique_ptr<data::Tokenizer> tok;
  try {
    tok = data::make_tokenizer(set.tokenizer);
  } catch (const Error&) {
  }
  const std::int32_t eot = tok ? tok->eot() : 0;
  std::vector<index_t> ids, max_new;
  for (index_t i = 0; i < set.size(); ++i) {
    ids.push_back(i);
    max_new.push_back(set.answer_tokens(i));
  }
  const auto answers = train::greedy_answers(gpt, set, ids, max_new, eot, train::Decoding::kv_cache, batch);
  std::vector<double> packed;  // (global index, n, tokens...)
  for (index_t i = 0; i < set.size(); ++i) {
    packed.push_back(static_cast<double>(first + i));
    packed.push_back(static_cast<double>(answers[static_cast<std::size_t>(i)].size()));
    for (const auto t : answers[static_cast<std::size_t>(i)]) packed.push_back(t);
  }
  const auto all = world.allgatherv(packed);
  std::vector<json> out;
  for (std::size_t k = 0; k < all.size();) {
    const auto n = static_cast<std::size_t>(all[k + 1]);
    std::vector<std::int32_t> got;
    for (std::size_t j = 0; j < n; ++j) got.push_back(static_cast<std::int32_t>(all[k + 2 + j]));
    const auto i = static_cast<std::size_t>(all[k]);
    json rec{{"sample", i},
             {"generated_tokens", got},
             {"correct", r.sample_correct[i]},
             {"answer_loss", r.sample_loss[i]},
             {"answer_tokens", r.sample_tokens[i]}};
    if (tok) rec["generated"] = tok->decode(got, true);
    out.push_back(std::move(rec));
    k += 2 + n;
  }
  return out;
}

void write_records(const fs::path& file, const std::vector<json>& records) {
  fs::create_directories(file.parent_path());
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) fail<IoError>("{}: cannot write (eval.samples_dir)", tmp.string());
    for (const auto& r : records) out << r.dump() << '\n';
  }
  fs::rename(tmp, file);
}

void print_forgetting_table(const fs::path& base, const fs::path& tuned, const Results& a, const Results& b,
                            const std::vector<std::string>& order, const fs::path& out, bool root) {
  log::info("forgetting: base {} vs tuned {} (delta = tuned - base; se paired over items)", base.string(),
            tuned.string());
  log::info("{:<28} {:<30} {:>10} {:>10} {:>10} {:>9}  {}", "task", "metric", "base", "tuned", "delta", "se",
            "verdict");
  std::ofstream file;
  if (root) file.open(out, std::ios::app);
  for (const auto& name : order) {
    const auto& ma = a.at(name);
    const auto& mb = b.at(name);
    for (std::size_t i = 0; i < ma.size(); ++i) {
      const eval::Delta d = eval::paired_delta(ma[i], mb[i]);
      // Beyond two standard errors a change is called; the sign says whether it helped.
      std::string verdict = "~ (within 2 se)";
      if (std::isfinite(d.stderr_) && std::fabs(d.delta) > 2 * d.stderr_)
        verdict = (d.delta > 0) == ma[i].higher_is_better ? "better" : "worse (forgot)";
      log::info("{:<28} {:<30} {:>10} {:>10} {:>+10.4f} {:>9}  {}", name, ma[i].name, show(d.base),
                show(d.tuned), d.delta, show(d.stderr_), verdict);
      if (root)
        file << json{{"kind", "forgetting"},
                     {"base", base.string()},
                     {"tuned", tuned.string()},
                     {"task", name},
                     {"metric", ma[i].name},
                     {"base_value", number(d.base)},
                     {"tuned_value", number(d.tuned)},
                     {"delta", number(d.delta)},
                     {"delta_stderr", number(d.stderr_)},
                     {"higher_is_better", ma[i].higher_is_better}}
                    .dump()
             << '\n';
    }
  }
}

}  // namespace

void run_eval(const StageContext& ctx) {
  const auto& e = ctx.job.eval;
  std::vector<fs::path> ckpts;
  const bool compare = !e.compare.empty();
  if (compare) {
    if (e.compare.size() != 2)
      fail<ConfigError>(
          "eval.compare holds {} entries; give two checkpoints, base then tuned (--compare base.h5 "
          "tuned.h5)",
          e.compare.size());
    for (const auto& c : e.compare) {
      const auto found = train::expand_checkpoints({c}, "eval.compare");
      if (found.size() != 1)
        fail<ConfigError>("eval.compare: {} names {} checkpoints; give one file each", c, found.size());
      ckpts.push_back(found[0]);
    }
  } else {
    config::require_nonempty(e.checkpoints, "eval.checkpoints", "eval");
    ckpts = train::expand_checkpoints(e.checkpoints, "eval.checkpoints");
  }
  if (e.sets.empty() && e.tasks.empty())
    fail<ConfigError>("eval.sets and eval.tasks are both empty; the eval stage needs at least one of them");
  std::vector<eval::Task> tasks;
  for (const auto& f : eval::expand_task_files(e.tasks, "eval.tasks")) tasks.push_back(eval::load_task(f));
  {
    std::set<std::string> names;
    for (const auto& t : tasks)
      if (!names.insert(t.spec.name).second)
        fail<ConfigError>("eval.tasks: two tasks are named '{}' ({}); give each task file its own name",
                          t.spec.name, t.spec.file.string());
  }
  const fs::path out = e.output.empty() ? fs::path(ctx.job.run.dir) / "eval.jsonl" : fs::path(e.output);
  if (ctx.world.is_root()) {
    if (out.has_parent_path()) fs::create_directories(out.parent_path());
    std::ofstream(out, std::ios::trunc);
  }
  // Per-item files: <checkpoint stem>_<task>.jsonl, with the run directory in front when stems repeat.
  std::set<std::string> stems;
  bool repeated = false;
  for (const auto& c : ckpts) repeated |= !stems.insert(c.stem().string()).second;
  auto samples_file = [&](const fs::path& ck, const std::string& what) {
    const std::string stem =
        (repeated ? ck.parent_path().filename().string() + "_" : "") + ck.stem().string();
    return fs::path(e.samples_dir) / (stem + "_" + what + ".jsonl");
  };

  log::info("eval: {} checkpoints x {} sets and {} tasks", ckpts.size(), e.sets.size(), tasks.size());
  std::vector<Results> results(ckpts.size());
  std::vector<std::string> order;
  for (std::size_t ci = 0; ci < ckpts.size(); ++ci) {
    const fs::path& ck = ckpts[ci];
    auto gpt = model::load_model(ck, ctx.job.run.backend);
    const std::int64_t step = io::CheckpointReader(ck).meta().step;
    if (!e.sets.empty())
      log::info("{:<40} {:<32} {:>10} {:>10} {:>9}", "checkpoint", "set", "loss", "ans_loss", "accuracy");
    for (const auto& spec : e.sets) {
      json row = {{"checkpoint", ck.string()}, {"step", step}, {"set", spec}};
      std::string loss = "-", ans = "-", acc = "-";
      if (is_sample_set(spec)) {
        const auto info = data::read_sample_set_info(spec);
        const std::int64_t n = e.max_samples > 0 ? std::min(e.max_samples, info.n_samples) : info.n_samples;
        const auto [first, count] = data::rank_block(n, ctx.world.rank(), ctx.world.size());
        const data::SampleSet set = data::read_sample_set(spec, first, count);
        const auto r = train::evaluate_samples(*gpt, set, e.micro_batch, ctx.world);
        row["kind"] = "samples";
        row["samples"] = r.samples;
        row["answer_loss"] = r.answer_loss.mean();
        row["answer_tokens"] = r.answer_loss.tokens;
        row["accuracy"] = r.accuracy();
        row["accuracy_stderr"] = number(eval::standard_error(r.sample_correct));
        ans = fmt::format("{:.4f}", r.answer_loss.mean());
        acc = fmt::format("{:.2f}%", 100 * r.accuracy());
        const std::string key = "set:" + fs::path(spec).filename().string();
        auto& ms = results[ci][key];
        ms.push_back(eval::mean_metric("accuracy", r.sample_correct));
        // The token-weighted mean answer loss: a ratio over samples (its error by the delta method).
        eval::Metric al =
            eval::ratio_metric("answer_loss", r.sample_loss, r.sample_tokens, eval::RatioForm::plain);
        ms.push_back(std::move(al));
        if (ci == 0) order.push_back(key);
        if (!e.samples_dir.empty()) {
          const auto recs = sample_records(*gpt, set, first, r, e.micro_batch, ctx.world);
          if (ctx.world.is_root()) write_records(samples_file(ck, fs::path(spec).stem().string()), recs);
        }
      } else {
        const index_t T = e.seq_len > 0 ? e.seq_len : gpt->config().block_size;
        const data::TokenDataset ds(data::expand_paths({spec}), T, gpt->config().vocab_size);
        const auto r = train::evaluate_windows(*gpt, ds, e.max_windows, e.micro_batch, ctx.world);
        row["kind"] = "tokens";
        row["loss"] = r.mean();
        row["tokens"] = r.tokens;
        loss = fmt::format("{:.4f}", r.mean());
      }
      if (ctx.world.is_root()) std::ofstream(out, std::ios::app) << row.dump() << '\n';
      const std::string name = ck.filename().string(), set = fs::path(spec).filename().string();
      log::info("{:<40} {:<32} {:>10} {:>10} {:>9}", name, set, loss, ans, acc);
    }
    if (!tasks.empty()) {
      const auto tok = eval::tokenizer_for(e.tokenizer, ck, gpt->config().vocab_size, "eval.tokenizer");
      // lm-eval's HF backend adds the BOS of Gemma models only.
      const eval::TextCodec codec(*tok, gpt->config().arch == "gemma2", e.add_bos);
      eval::Engine engine(*gpt, e.micro_batch, ctx.world);
      log::info("{:<40} {:<24} {:<28} {:>10} {:>9} {:>6}", "checkpoint", "task", "metric", "value", "stderr",
                "n");
      for (const auto& task : tasks) {
        const eval::TaskResult r =
            eval::run_task(engine, codec, task, {e.max_samples, e.num_fewshot, e.fewshot_seed});
        json metrics = json::object(), errors = json::object();
        for (const auto& m : r.metrics) {
          metrics[m.name] = number(m.value);
          errors[m.name] = number(m.stderr_);
          log::info("{:<40} {:<24} {:<28} {:>10} {:>9} {:>6}", ck.filename().string(), r.task, m.name,
                    show(m.value), show(m.stderr_), r.items);
        }
        if (ctx.world.is_root())
          std::ofstream(out, std::ios::app) << json{{"checkpoint", ck.string()},
                                                    {"step", step},
                                                    {"task", r.task},
                                                    {"kind", eval::kind_name(r.kind)},
                                                    {"task_file", task.spec.file.string()},
                                                    {"items", r.items},
                                                    {"num_fewshot", r.num_fewshot},
                                                    {"tokenizer", tok->name()},
                                                    {"metrics", metrics},
                                                    {"stderr", errors}}
                                                   .dump()
                                            << '\n';
        if (!e.samples_dir.empty() && ctx.world.is_root()) write_records(samples_file(ck, r.task), r.records);
        results[ci][r.task] = r.metrics;
        if (ci == 0) order.push_back(r.task);
      }
    }
    log::progress(static_cast<double>(ci + 1) / static_cast<double>(ckpts.size()));
  }
  if (compare)
    print_forgetting_table(ckpts[0], ckpts[1], results[0], results[1], order, out, ctx.world.is_root());
  log::info("eval: wrote {}", out.string());
}

}  // namespace flowlm::stages
