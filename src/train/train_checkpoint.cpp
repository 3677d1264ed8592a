#include "train/train_checkpoint.hpp"

#include <algorithm>
#include <vector>

#include "core/error.hpp"
#include "core/log.hpp"
#include "io/checkpoint.hpp"
#include "model/checkpoint.hpp"

namespace flowlm::train {
namespace fs = std::filesystem;

namespace {
std::string optim_name(const char* moment, const std::string& param) {
  return std::string(moment) + "/" + param;
}
}  // namespace

std::string ema_checkpoint_name(std::int64_t step) { return "ema_" + io::checkpoint_name(step); }

fs::path save_train_checkpoint(const config::JobConfig& job, const TrainState& state,
                               const model::Transformer& model, const AdamW& opt, const WeightEma* ema,
                               const comm::Communicator& world) {
  const fs::path dir = job.run.dir;
  io::CheckpointMeta meta;
  meta.step = state.step;
  meta.tokens_seen = state.tokens_seen;
  meta.world_size = world.size();
  meta.config_toml = config::to_toml(job);
  meta.rng_state = fmt::format("seed={}", job.run.seed);  // no random state beyond the seeded data order
  meta.data_cursor = {state.cursor.position};
  meta.model_attrs = model::model_attrs(model.config());
  meta.extra["kind"] = "train";
  if (!job.finetune.train_set.empty()) {
    meta.extra["finetune_method"] = job.finetune.method;
    meta.extra["finetune_set"] = job.finetune.train_set;
  }
  if (const model::Lora* lora = model.lora())
    model::add_lora_meta(meta, *lora, job.model.init_from, state.lora_base_fingerprint);
  // The trainable tensors as checkpoints store them: in place in the flat buffers, or (LoRA) the
  // adapters in PEFT's layout, copied.
  const auto& table = model.trainable_table();
  std::vector<std::vector<float>> held;
  held.reserve(4 * table.size());
  auto tensors = [&](const float* flat, const char* prefix) {
    std::vector<io::TensorRef> refs;
    for (std::size_t i = 0; i < table.size(); ++i) {
      const float* data = flat + table[i].offset;
      if (model.lora()) {
        held.push_back(model::stored_tensor(model, i, flat));
        data = held.back().data();
      }
      refs.push_back({prefix ? optim_name(prefix, table[i].name) : table[i].name, table[i].shape, data, 0});
    }
    return refs;
  };
  // ZeRO-1: each rank holds the moments of its slice, whole rows of each tensor it meets.
  const bool parts = job.optim.zero_stage == 1 && world.size() > 1;
  auto moment_parts = [&](const float* slice, const char* prefix) {
    std::vector<io::TensorRef> refs;
    for (const auto& p : table) {
      const RowRange rows = rows_in_slice(p, opt.slice_begin(), opt.slice_end());
      const float* data =
          rows.count > 0 ? slice + (std::max(p.offset, opt.slice_begin()) - opt.slice_begin()) : nullptr;
      refs.push_back({optim_name(prefix, p.name), p.shape, data, io::kRowParts, rows.first, rows.count});
    }
    return refs;
  };
  const std::vector<float> params = model.lora() ? model.lora()->host_params() : std::vector<float>();
  const std::vector<io::TensorRef> weights = tensors(model.lora() ? params.data() : model.params(), nullptr);
  std::vector<io::TensorRef> moments = parts ? moment_parts(opt.m(), "m") : tensors(opt.m(), "m");
  const std::vector<io::TensorRef> second = parts ? moment_parts(opt.v(), "v") : tensors(opt.v(), "v");
  moments.insert(moments.end(), second.begin(), second.end());
  const fs::path path = dir / io::checkpoint_name(state.step);
  io::write_checkpoint(path, meta, weights, moments, world);
  if (ema) {
    io::CheckpointMeta ema_meta = meta;
    ema_meta.extra["kind"] = "ema";
    ema_meta.extra["ema_decay"] = fmt::format("{}", ema->decay());
    io::write_checkpoint(dir / ema_checkpoint_name(state.step), ema_meta, tensors(ema->host_data(), nullptr),
                         {}, world);
  }
  if (world.is_root() && job.checkpoint.keep_last > 0) io::prune_checkpoints(dir, job.checkpoint.keep_last);
  return path;
}

std::optional<Resumed> resume_train_checkpoint(const config::JobConfig& job, model::Transformer& model,
                                               AdamW& opt, const comm::Communicator& world) {
  const auto file = io::newest_valid_checkpoint(job.run.dir);
  if (!file) return std::nullopt;
  const io::CheckpointReader ckpt(*file);
  const auto& meta = ckpt.meta();
  // The state is global (full moments, one cursor into the global data stream), so any rank
  // count continues the run, as long as the data stream is the same one.
  const config::JobConfig saved = config::parse_job(meta.config_toml, file->string() + " (config_toml)");
  auto same = [&](const char* key, const auto& mine, const auto& theirs) {
    if (mine != theirs)
      fail<ConfigError>(
          "{}: the run was saved with {} = {} and this job has {}; the data order depends on it, so resume "
          "with the saved value or start a new run.dir",
          file->string(), key, theirs, mine);
  };
  same("train.global_batch", job.train.global_batch, saved.train.global_batch);
  same("train.seq_len", job.train.seq_len, saved.train.seq_len);
  same("run.seed", job.run.seed, saved.run.seed);
  same("finetune.train_set", job.finetune.train_set, saved.finetune.train_set);
  if (meta.world_size != world.size())
    log::info(
        "train: {} was written by {} ranks; continuing on {} (same global batch: the trajectory matches to "
        "float rounding, not bitwise)",
        file->string(), meta.world_size, world.size());
  if (meta.data_cursor.size() != 1)
    fail<IoError>("{}: attribute 'data_cursor' has {} entries, expected 1", file->string(),
                  meta.data_cursor.size());
  TrainState state{meta.step, meta.tokens_seen, data::LoaderCursor{meta.data_cursor[0]}, {}};
  if (model.lora()) {
    if (!model::is_lora_checkpoint(ckpt))
      fail<ConfigError>("{}: was saved without LoRA; this job sets finetune.lora.r = {}: start a new run.dir",
                        file->string(), job.finetune.lora.r);
    const model::LoraCheckpointInfo info = model::read_lora_info(ckpt);
    same("finetune.lora.r", job.finetune.lora.r, info.spec.r);
    state.lora_base_fingerprint = info.base_fingerprint;
  } else if (model::is_lora_checkpoint(ckpt)) {
    fail<ConfigError>(
        "{}: holds LoRA adapters; this job has no finetune.lora: set it as saved or start a new run.dir",
        file->string());
  }
  model::load_weights(model, ckpt);
  const auto& table = model.trainable_table();
  std::vector<float> stored;
  const bool sliced = opt.slice_begin() != 0 || opt.slice_end() != opt.size();
  for (std::size_t i = 0; i < table.size(); ++i) {
    const auto& p = table[i];
    if (sliced) {  // ZeRO-1: this rank's rows of each moment, whatever rank count wrote them
      const RowRange rows = rows_in_slice(p, opt.slice_begin(), opt.slice_end());
      if (rows.count == 0) continue;
      const index_t at = std::max(p.offset, opt.slice_begin()) - opt.slice_begin();
      ckpt.read_rows("optim", optim_name("m", p.name), p.shape, rows.first, rows.count, opt.m() + at);
      ckpt.read_rows("optim", optim_name("v", p.name), p.shape, rows.first, rows.count, opt.v() + at);
      continue;
    }
    stored.resize(static_cast<std::size_t>(p.numel));
    ckpt.read("optim", optim_name("m", p.name), p.shape, stored.data());
    model::unstore_tensor(model, i, stored.data(), opt.m());
    ckpt.read("optim", optim_name("v", p.name), p.shape, stored.data());
    model::unstore_tensor(model, i, stored.data(), opt.v());
  }
  opt.set_step_count(meta.step);
  return Resumed{*file, state};
}

}  // namespace flowlm::train
