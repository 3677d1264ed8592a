// `flowlm prepare job.toml`: tokenize prepare.inputs into train/val token shards (format =
// "text") or into sample sets of prompt/answer records (format = "jsonl"), with the byte
// tokenizer or a Hugging Face / SentencePiece / GPT-2 tokenizer (prepare.tokenizer).
#include "data/prepare.hpp"
#include "data/sampleset.hpp"
#include "stages/stage.hpp"

namespace flowlm::stages {

void run_prepare(const StageContext& ctx) {
  const auto& p = ctx.job.prepare;
  config::require_nonempty(p.inputs, "prepare.inputs", "prepare");
  config::require_nonempty(p.output_dir, "prepare.output_dir", "prepare");
  if (p.format == "jsonl") {
    data::JsonlPrepareOptions opts;
    opts.inputs = p.inputs;
    opts.output_dir = p.output_dir;
    opts.name = p.name;
    opts.tokenizer = p.tokenizer;
    opts.prompt_template = p.prompt_template;
    opts.val_fraction = p.val_fraction;
    opts.prompt_field = p.prompt_field;
    opts.answer_field = p.answer_field;
    opts.block_size = p.block_size;
    opts.overlong = data::parse_overlong(p.overlong);
    data::prepare_jsonl_sample_sets(opts, ctx.world);
    return;
  }
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
