#include "train/inherit.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <set>

#include "core/error.hpp"
#include "core/log.hpp"
#include "io/checkpoint.hpp"
#include "model/checkpoint.hpp"

namespace flowlm::train {
namespace fs = std::filesystem;

std::vector<std::int64_t> inherit_block_list(const config::InheritConfig& cfg, std::int64_t source_layers) {
  std::vector<std::int64_t> blocks;
  if (!cfg.blocks.empty()) {
    std::set<std::int64_t> seen;
    for (const auto b : cfg.blocks) {
      if (b < 0 || b >= source_layers)
        fail<ConfigError>("inherit.blocks: block {} does not exist; the source {} has blocks 0..{}", b,
                          cfg.from, source_layers - 1);
      if (!seen.insert(b).second) fail<ConfigError>("inherit.blocks: block {} is listed twice", b);
    }
    return cfg.blocks;
  }
  const std::int64_t k = cfg.layers > 0 ? cfg.layers : std::max<std::int64_t>(1, source_layers / 2);
  if (k > source_layers)
    fail<ConfigError>("inherit.layers = {} exceeds the {} blocks of the source {}; choose 1..{}", k,
                      source_layers, cfg.from, source_layers);
  for (std::int64_t b = 0; b < k; ++b) blocks.push_back(b);
  return blocks;
}

Inherited inherit_model(const config::InheritConfig& cfg, const config::JobConfig& job, std::uint64_t seed) {
  config::require_nonempty(cfg.from, "inherit.from", "inherit");
  const model::ModelConfig src = model::read_model_config(io::CheckpointReader(cfg.from), job.model.n_head);
  if (src.tie_embeddings && cfg.token_embedding != cfg.head)
    fail<ConfigError>(
        "inherit.token_embedding = {} but inherit.head = {}: the source {} ties the LM head to the token "
        "embedding (one tensor); set both to the same value",
        cfg.token_embedding, cfg.head, cfg.from);
  std::vector<std::int64_t> blocks = inherit_block_list(cfg, src.n_layer);
  model::ModelConfig small = src;
  small.n_layer = static_cast<std::int64_t>(blocks.size());

  // Record the source's own job (consistent by construction) with the small depth; a source
  // without a readable job gets this job, clamped so that it stays valid.
  config::JobConfig out_job = job;
  try {
    out_job = config::parse_job(io::CheckpointReader(cfg.from).meta().config_toml, cfg.from);
  } catch (const Error&) {
    out_job.data.vocab_size = std::min(out_job.data.vocab_size, small.vocab_size);
  }
  out_job.inherit = cfg;
  out_job.model = small;
  out_job.model.init_from = "";
  // Keep the recorded job valid (parse_job checks seq_len <= block_size).
  out_job.train.seq_len = std::min(out_job.train.seq_len, small.block_size);
  Inherited res{model::Transformer(small), out_job, blocks, {}, {}};
  res.gpt.init_random(seed);

  const io::CheckpointReader reader(cfg.from);
  // What to copy follows from each tensor's role in the table, whatever the family.
  for (const auto& p : res.gpt.param_table()) {
    std::string source_name;
    if (p.layer >= 0)
      source_name = model::rename_block(p.name, blocks[static_cast<std::size_t>(p.layer)]);
    else if ((p.role == model::Role::tok_embed && cfg.token_embedding) ||
             (p.role == model::Role::pos_embed && cfg.position_embedding) ||
             (p.role == model::Role::final_norm && cfg.final_norm) ||
             (p.role == model::Role::lm_head && cfg.head))
      source_name = p.name;
    if (source_name.empty()) {
      res.initialized.push_back(p.name);
      continue;
    }
    reader.read("model", source_name, p.shape, res.gpt.params() + p.offset);
    res.copied.push_back(p.name);
  }
  return res;
}

fs::path run_inherit(const config::JobConfig& job, const comm::Communicator& world) {
  const fs::path out =
      job.inherit.output.empty() ? fs::path(job.run.dir) / "inherited.h5" : fs::path(job.inherit.output);
  // Every rank builds the (small) model from the same file, so no data moves between ranks.
  const Inherited inh = inherit_model(job.inherit, job, static_cast<std::uint64_t>(job.run.seed));
  const io::CheckpointReader src(job.inherit.from);
  io::CheckpointMeta meta;
  meta.step = 0;
  meta.tokens_seen = 0;
  meta.world_size = world.size();
  meta.config_toml = config::to_toml(inh.job);
  meta.rng_state = fmt::format("seed={}", job.run.seed);
  meta.data_cursor = {0};
  meta.model_attrs = model::model_attrs(inh.gpt.config());
  meta.extra["kind"] = "inherit";
  meta.extra["inherit_source"] = job.inherit.from;
  meta.extra["inherit_source_step"] = std::to_string(src.meta().step);
  meta.extra["inherit_blocks"] = nlohmann::json(inh.blocks).dump();
  meta.extra["inherit_copied"] = nlohmann::json(inh.copied).dump();
  meta.extra["inherit_initialized"] = nlohmann::json(inh.initialized).dump();
  std::vector<io::TensorRef> tensors;
  for (const auto& p : inh.gpt.param_table())
    tensors.push_back({p.name, p.shape, inh.gpt.params() + p.offset, 0});
  io::write_checkpoint(out, meta, tensors, {}, world);
  log::info("inherit: wrote {} ({} blocks {} of {}; copied {} tensors, {} left at random init)", out.string(),
            inh.blocks.size(), nlohmann::json(inh.blocks).dump(), job.inherit.from, inh.copied.size(),
            inh.initialized.size());
  return out;
}

}  // namespace flowlm::train
