// `flowlm eval job.toml`: every checkpoint x every eval set -> eval.jsonl and a table.
// Token shards give the mean next-token loss; sample sets give the mean answer loss and the
// exact-match accuracy of greedy decoding. Work is sharded across ranks.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/sampleset.hpp"
#include "data/shard.hpp"
#include "io/checkpoint.hpp"
#include "stages/stage.hpp"
#include "train/evaluate.hpp"

namespace flowlm::stages {
namespace fs = std::filesystem;

namespace {

bool is_sample_set(const std::string& spec) {
  return spec.size() > 3 && spec.compare(spec.size() - 3, 3, ".h5") == 0;
}

}  // namespace

void run_eval(const StageContext& ctx) {
  const auto& e = ctx.job.eval;
  config::require_nonempty(e.checkpoints, "eval.checkpoints", "eval");
  config::require_nonempty(e.sets, "eval.sets", "eval");
  const auto ckpts = train::expand_checkpoints(e.checkpoints, "eval.checkpoints");
  const fs::path out = e.output.empty() ? fs::path(ctx.job.run.dir) / "eval.jsonl" : fs::path(e.output);
  if (ctx.world.is_root()) {
    if (out.has_parent_path()) fs::create_directories(out.parent_path());
    std::ofstream(out, std::ios::trunc);
  }
  log::info("eval: {} checkpoints x {} sets", ckpts.size(), e.sets.size());
  log::info("{:<40} {:<32} {:>10} {:>10} {:>9}", "checkpoint", "set", "loss", "ans_loss", "accuracy");
  for (std::size_t ci = 0; ci < ckpts.size(); ++ci) {
    const fs::path& ck = ckpts[ci];
    auto gpt = model::load_model(ck);
    const std::int64_t step = io::CheckpointReader(ck).meta().step;
    for (const auto& spec : e.sets) {
      nlohmann::json row = {{"checkpoint", ck.string()}, {"step", step}, {"set", spec}};
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
        ans = fmt::format("{:.4f}", r.answer_loss.mean());
        acc = fmt::format("{:.2f}%", 100 * r.accuracy());
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
    log::progress(static_cast<double>(ci + 1) / static_cast<double>(ckpts.size()));
  }
  log::info("eval: wrote {}", out.string());
}

}  // namespace flowlm::stages
