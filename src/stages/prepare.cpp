// `flowlm prepare job.toml`: tokenize prepare.inputs into train/val token shards.
#include "data/prepare.hpp"
#include "stages/stage.hpp"

namespace flowlm::stages {

void run_prepare(const StageContext& ctx) {
  const auto& p = ctx.job.prepare;
  config::require_nonempty(p.inputs, "prepare.inputs", "prepare");
  config::require_nonempty(p.output_dir, "prepare.output_dir", "prepare");
  data::PrepareOptions opts;
  opts.inputs = p.inputs;  // relative paths are taken from the working directory
  opts.output_dir = p.output_dir;
  opts.name = p.name;
  opts.tokenizer = p.tokenizer;
  opts.val_fraction = p.val_fraction;
  opts.shard_tokens = p.shard_tokens;
  data::prepare_text_shards(opts, ctx.world);
}

}  // namespace flowlm::stages
