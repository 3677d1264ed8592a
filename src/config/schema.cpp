// The field tables of the job schema and the checks between keys. Defaults are NOT here:
// they are the member initialisers in config.hpp.
#include "config/schema.hpp"

#include "core/error.hpp"

namespace flowlm::config {

namespace {

void describe(RunConfig& c, Schema& s) {
  s.field("dir", c.dir, "Directory for this run's checkpoints, metrics.jsonl and logs.", nonempty());
  s.field("seed", c.seed, "Seed for initialisation and data order.", ge(0));
  s.field("backend", c.backend,
          "Kernel backend: host (Kokkos + OpenBLAS), reference (plain loops, for checks) or cuda.",
          one_of({"host", "reference", "cuda"}));
  s.field("collective_timeout", c.collective_timeout,
          "Seconds a rank may wait in one collective (another rank died, hangs or is stopped) before it "
          "ends the job with a message naming itself and what it was doing; 0 = wait forever.",
          ge(0.0));
}

void describe(DataConfig& c, Schema& s) {
  s.field("train", c.train, "Training token shards: paths or globs of llm.c .bin shards or raw uint16 .bin.");
  s.field("val", c.val, "Validation token shards (same formats); empty = no validation.");
  s.field("vocab_size", c.vocab_size, "Every token id in the shards must be < vocab_size.", ge(1));
}

void describe(PrepareConfig& c, Schema& s) {
  s.field("inputs", c.inputs, "Text files or globs to tokenize (required by the prepare stage).");
  s.field("output_dir", c.output_dir, "Writes <output_dir>/<name>_train_NNNNNN.bin and _val_ shards.",
          nonempty());
  s.field("name", c.name, "Prefix of the shard file names.", nonempty());
  s.field("tokenizer", c.tokenizer,
          "Tokenizer: byte (vocab 256), or the path of a Hugging Face tokenizer.json, a SentencePiece "
          "tokenizer.model, GPT-2's encoder.json (+ vocab.bpe), or a model directory holding one.",
          nonempty());
  s.field("val_fraction", c.val_fraction, "Fraction of the tokens held out for validation.", between(0, 0.5));
  s.field("shard_tokens", c.shard_tokens, "Maximum tokens per shard file.", ge(1024));
  s.field(
      "format", c.format,
      "text: each input file is a document -> token shards; jsonl: one {prompt, answer} record per line -> "
      "sample sets <name>_train.h5 (and <name>_val.h5 when val_fraction > 0).",
      one_of({"text", "jsonl"}));
  s.field("prompt_field", c.prompt_field, "jsonl: the field holding the prompt (masked out of the loss).",
          nonempty());
  s.field("answer_field", c.answer_field, "jsonl: the field holding the answer (the tokens the loss counts).",
          nonempty());
  s.field("block_size", c.block_size,
          "jsonl: most model input tokens per sample (prompt + answer + EOT - 1).", ge(1));
  s.field("overlong", c.overlong,
          "jsonl: a sample longer than block_size is an error, truncated (answer cut), or dropped; counted.",
          one_of({"error", "truncate", "drop"}));
  s.field("template", c.prompt_template,
          "jsonl: the prompt's template: none (as it is), alpaca (Stanford Alpaca's, as the FLOW reference), "
          "or a text with {prompt}; the answer follows it, then the end-of-sequence token.",
          nonempty());
}

void describe(ModelConfig& c, Schema& s) {
  s.field("arch", c.arch,
          "Model family: its tensor names and the defaults of the keys below that the job does not set "
          "(llama also covers Llama 2/3, Mistral and, with biases = 'qkv', Qwen2).",
          one_of({"gpt2", "llama", "gemma2"}));
  s.field("n_layer", c.n_layer, "Number of transformer blocks.", ge(1).le(kMaxModelLayers));
  s.field("n_head", c.n_head, "Attention (query) heads per block.", ge(1).le(kMaxModelHeads));
  s.field("n_kv_head", c.n_kv_head, "Key/value heads (grouped-query attention; divides n_head); 0 = n_head.",
          ge(0).le(kMaxModelHeads));
  s.field("head_dim", c.head_dim, "Channels per head; 0 = n_embd / n_head.", ge(0).le(kMaxModelWidth));
  s.field("n_embd", c.n_embd, "Embedding (residual stream) width.", ge(1).le(kMaxModelWidth));
  s.field("n_ff", c.n_ff,
          "MLP hidden width; 0 = 4 n_embd (gpt2, gemma2) or 8/3 n_embd rounded up to 256 (llama).",
          ge(0).le(kMaxModelFF));
  s.field("vocab_size", c.vocab_size, "Rows of the token embedding (may be padded above data.vocab_size).",
          ge(1).le(kMaxModelVocab));
  s.field("block_size", c.block_size, "Maximum sequence length (rows of a learned position embedding).",
          ge(1).le(kMaxModelBlock));
  s.field("norm", c.norm, "Normalisation: layernorm, rmsnorm, or rmsnorm_plus_one (x * (1 + w), Gemma).",
          one_of({"layernorm", "rmsnorm", "rmsnorm_plus_one"}));
  s.field("norm_eps", c.norm_eps, "Epsilon of every norm.", gt(0));
  s.field("pos", c.pos, "Positions: learned (an embedding, gpt2) or rope (rotary, Hugging Face rotate-half).",
          one_of({"learned", "rope"}));
  s.field("rope_theta", c.rope_theta, "RoPE base frequency.", gt(0));
  s.field("mlp", c.mlp, "MLP: gelu (fc, tanh-GELU, proj), swiglu or geglu (gate, up, down).",
          one_of({"gelu", "swiglu", "geglu"}));
  s.field("biases", c.biases, "Biases: all (every linear layer and norm, gpt2), none, or qkv (Qwen2).",
          one_of({"all", "none", "qkv"}));
  s.field("tie_embeddings", c.tie_embeddings, "The LM head is the token embedding (no lm_head.weight).");
  s.field("post_norms", c.post_norms, "Gemma-2: also normalise the attention and MLP outputs.");
  s.field("embed_scale", c.embed_scale, "Factor on the token embeddings; 0 = sqrt(n_embd) (Gemma).", ge(0));
  s.field("attn_softcap", c.attn_softcap, "Attention logit soft-cap s = cap * tanh(s / cap); 0 = none.",
          ge(0));
  s.field("final_softcap", c.final_softcap, "Output logit soft-cap; 0 = none.", ge(0));
  s.field("sliding_window", c.sliding_window, "Sliding-window attention span in tokens; 0 = full causal.",
          ge(0).le(kMaxModelBlock));
  s.field("sliding_window_layers", c.sliding_window_layers,
          "Layers with the window: all (Mistral) or alternate (even layers, Gemma-2).",
          one_of({"all", "alternate"}));
  s.field("query_scale", c.query_scale,
          "Factor on q.k in attention; 0 = 1 / sqrt(head_dim) (Gemma-2: query_pre_attn_scalar^-0.5).", ge(0));
  s.field("init_from", c.init_from, "Checkpoint to start from; empty = random initialisation.");
}

void describe(OptimConfig& c, Schema& s) {
  s.field("lr", c.lr, "Peak learning rate (AdamW).", gt(0));
  s.field("min_lr", c.min_lr, "Learning rate at the end of the decay; <= lr.", ge(0));
  s.field("weight_decay", c.weight_decay, "Decoupled weight decay on matrices (never biases or norms).",
          ge(0));
  s.field("beta1", c.beta1, "AdamW first-moment decay.", ge(0).lt(1));
  s.field("beta2", c.beta2, "AdamW second-moment decay.", ge(0).lt(1));
  s.field("eps", c.eps, "AdamW denominator epsilon.", gt(0));
  s.field("grad_clip", c.grad_clip, "Clip the global gradient norm to this; 0 disables.", ge(0));
  s.field(
      "schedule", c.schedule,
      "cosine: warmup then cosine to min_lr; constant: lr after warmup; wsd: warmup, stable, linear decay.",
      one_of({"cosine", "constant", "wsd"}));
  s.field("warmup_steps", c.warmup_steps, "Linear warmup steps from 0 to lr; <= train.max_steps.", ge(0));
  s.field("decay_fraction", c.decay_fraction, "wsd: last fraction of max_steps decays linearly to min_lr.",
          between(0, 1));
  s.field("decay_embeddings", c.decay_embeddings, "Apply weight decay to the wte/wpe embeddings too.");
  s.field("zero_stage", c.zero_stage,
          "0: every rank keeps the whole AdamW state. 1 (ZeRO-1): each rank keeps the moments of its "
          "1/ranks slice of the weights; gradients are summed onto the slice's rank, which updates it and "
          "broadcasts the new weights. Checkpoints are the same files either way.",
          ge(0).le(1));
}

void describe(TrainConfig& c, Schema& s) {
  s.field("global_batch", c.global_batch, "Sequences per optimizer step, all ranks together.", ge(1));
  s.field("micro_batch", c.micro_batch, "Sequences per rank per forward/backward; divides global_batch.",
          ge(1));
  s.field("seq_len", c.seq_len, "Tokens per sequence (T); <= model.block_size.", ge(1));
  s.field("max_steps", c.max_steps, "Optimizer steps to run.", ge(1));
  s.field("log_every", c.log_every, "Log the training loss every this many steps.", ge(1));
  s.field("val_every", c.val_every, "Evaluate on data.val every this many steps; 0 = never.", ge(0));
  s.field("val_batches", c.val_batches,
          "Global batches (global_batch sequences each) in one validation pass.", ge(1));
  s.field("resume", c.resume, "Continue from the latest checkpoint in run.dir if there is one.");
  s.field("ema_decay", c.ema_decay,
          "Keep an online EMA of the weights with this decay, saved as ema_step_N.h5 beside each checkpoint; "
          "0 = off.",
          ge(0).lt(1));
}

void describe(CheckpointConfig& c, Schema& s) {
  s.field("save_every", c.save_every, "Save every this many steps; 0 = only save_steps and the final step.",
          ge(0));
  s.field("save_steps", c.save_steps, "Extra steps to save at (e.g. LAWA spacing).", ge(1));
  s.field("keep_last", c.keep_last, "Keep only the newest this many checkpoints; 0 = keep all.", ge(0));
  s.field("save_final", c.save_final, "Save the final step.");
}

void describe(InheritConfig& c, Schema& s) {
  s.field("from", c.from, "Source checkpoint of the larger model (required by inherit).");
  s.field("output", c.output, "Checkpoint file to write the small model to; empty = <run.dir>/inherited.h5.");
  s.field("layers", c.layers, "Copy the first k blocks; 0 = half of the source's blocks.", ge(0));
  s.field("blocks", c.blocks, "Explicit source block indices to copy, in order; overrides layers when set.",
          ge(0));
  s.field("token_embedding", c.token_embedding, "Copy the token embedding wte (tied to the LM head).");
  s.field("position_embedding", c.position_embedding, "Copy the position embedding wpe.");
  s.field("final_norm", c.final_norm, "Copy the final LayerNorm ln_f.");
  s.field("head", c.head, "Copy the LM head (GPT-2 ties it to wte: must equal token_embedding).");
}

void describe(AverageConfig& c, Schema& s) {
  s.field("mode", c.mode,
          "lawa: last k checkpoints per window; swa: uniform mean over a step range; ema: EMA over the saved "
          "sequence; interpolate: alpha * A + (1 - alpha) * B (WiSE-FT).",
          one_of({"lawa", "swa", "ema", "interpolate"}));
  s.field("inputs", c.inputs,
          "Run directories, checkpoint files or globs; empty = run.dir (interpolate: exactly two files).");
  s.field("output_dir", c.output_dir, "Directory for the averaged checkpoints; empty = <run.dir>/averaged.");
  s.field("k", c.k, "lawa: checkpoints averaged per window.", ge(1));
  s.field("every", c.every, "lawa: spacing in steps between the averaged checkpoints; 0 = every saved one.",
          ge(0));
  s.field("grouped", c.grouped, "lawa: non-overlapping groups of k instead of a sliding window.");
  s.field("start_step", c.start_step, "swa/ema: first step included.", ge(0));
  s.field("end_step", c.end_step, "swa/ema: last step included; -1 = up to the last checkpoint.", ge(-1));
  s.field("decay", c.decay, "ema: weight of the running average (the reference uses 0.9).", ge(0).lt(1));
  s.field("alphas", c.alphas, "interpolate: weights of the first input, each in [0, 1].", between(0, 1));
}

void describe(FinetuneConfig& c, Schema& s) {
  s.field(
      "method", c.method,
      "standard: plain fine-tuning; flow: per-sample weights from finetune.scores; l2_init: adds "
      "l2_lambda * sum((theta - theta0)^2) / num_params; l1_init: adds l1_lambda * sum(|theta - theta0|) / "
      "num_params (theta: the trained parameters, the adapters with LoRA).",
      one_of({"standard", "flow", "l2_init", "l1_init"}));
  s.field("train_set", c.train_set,
          "Sample set (.h5) to fine-tune on; empty = pretrain on data.train shards.");
  s.field("scores", c.scores, "scores.h5 written by `flowlm score` for train_set (method = flow).");
  s.field("epochs", c.epochs, "> 0: run ceil(epochs * samples / global_batch) steps instead of max_steps.",
          ge(0));
  s.field("l2_lambda", c.l2_lambda, "l2_init: strength of the pull towards the initial weights.", ge(0));
  s.field("l1_lambda", c.l1_lambda, "l1_init: strength of the L1 pull towards the initial weights.", ge(0));
}

void describe(LoraConfig& c, Schema& s) {
  s.field("r", c.r, "Adapter rank; 0 = no adapters (every parameter trains).", ge(0));
  s.field("alpha", c.alpha, "Scale numerator: delta W = (alpha / r) B A; 0 = alpha equal to r.", ge(0));
  s.field("dropout", c.dropout,
          "Dropout on the adapters' input. flowlm folds B A into the weight each step, which has no input "
          "dropout: only 0 is accepted.",
          between(0, 1));
  s.field("targets", c.targets,
          "Projections that get adapters, by module name as PEFT matches them (GPT-2: c_attn, c_proj, c_fc; "
          "Llama, Gemma-2: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj); empty = all of "
          "them.");
}

void describe(FlowConfig& c, Schema& s) {
  s.field("tau", c.tau,
          "Temperature of w = exp(-loss / tau): \"median\" of all losses, a number, or {quantile = q}.");
  s.field("normalize", c.normalize, "mean: divide weights by their global mean; none: raw weights in (0, 1].",
          one_of({"mean", "none"}));
  s.field(
      "granularity", c.granularity,
      "sample: w_i from sample losses; token: w_it = exp(-l_it / tau) per answer token; both: w_i * w_it. "
      "train resolves tau and the weights from the losses in scores.h5, so a tau sweep scores once.",
      one_of({"sample", "token", "both"}));
}

void describe(ScoreConfig& c, Schema& s) {
  s.field("checkpoint", c.checkpoint, "Pre-trained checkpoint that scores the samples (required by score).");
  s.field("sample_set", c.sample_set, "Sample set (.h5) to score (required by score).");
  s.field("output", c.output, "Scores file to write; empty = <run.dir>/scores.h5.");
  s.field("batch", c.batch,
          "Samples per forward pass (fixed global groups, so results ignore the rank count).", ge(1));
}

void describe(EvalConfig& c, Schema& s) {
  s.field("checkpoints", c.checkpoints, "Checkpoint files, run directories (every step_*.h5) or globs.");
  s.field("sets", c.sets, "Eval sets: token shards (.bin or globs) or sample sets (.h5).");
  s.field("output", c.output,
          "eval.jsonl to write (one row per checkpoint and set); empty = <run.dir>/eval.jsonl.");
  s.field("micro_batch", c.micro_batch, "Sequences per forward pass.", ge(1));
  s.field("max_windows", c.max_windows, "Token sets: evaluate only the first N windows; 0 = all.", ge(0));
  s.field("seq_len", c.seq_len, "Token sets: window length; 0 = the checkpoint's block_size.", ge(0));
  s.field(
      "tasks", c.tasks,
      "Benchmark task files (.toml or globs; README \"Benchmark tasks\"): multiple_choice (acc, acc_norm), "
      "generate (exact_match) and loglikelihood_rolling (perplexities, bits_per_byte), as lm-eval scores "
      "them.");
  s.field("max_samples", c.max_samples, "Sample sets and tasks: evaluate only the first N items; 0 = all.",
          ge(0));
  s.field("tokenizer", c.tokenizer,
          "Tasks: the tokenizer; empty = the checkpoint's (recorded by import, or by the model it started "
          "from), else byte for a 256-token vocabulary; or byte, or a tokenizer file / model directory.");
  s.field(
      "add_bos", c.add_bos,
      "Tasks: start every context with the BOS token, else the end-of-text token (lm-eval's add_bos_token): "
      "for models trained on documents that follow an end-of-text token, as prepare frames them. Gemma "
      "models always get their BOS.");
  s.field("num_fewshot", c.num_fewshot, "Tasks: few-shot examples per prompt; -1 = each task's num_fewshot.",
          ge(-1));
  s.field("fewshot_seed", c.fewshot_seed, "Tasks: seed of the few-shot draw; -1 = each task's fewshot_seed.",
          ge(-1));
  s.field("compare", c.compare,
          "Two checkpoints, base then tuned: evaluates both on the tasks and sample sets and prints the "
          "forgetting table (base, tuned, delta and its paired standard error); replaces checkpoints.");
  s.field("samples_dir", c.samples_dir,
          "Directory for per-item records (<checkpoint>_<task>.jsonl: prompt, log-likelihoods, response, "
          "score); empty = none.");
}

void describe(GenerateConfig& c, Schema& s) {
  s.field("checkpoint", c.checkpoint, "The checkpoint that generates (required by generate).");
  s.field("prompts", c.prompts, "Prompts given in the job file.");
  s.field("prompts_file", c.prompts_file,
          "More prompts: a text file (one prompt per line; \\n in a line is a newline) or a .jsonl file.");
  s.field("prompt_field", c.prompt_field, "JSONL prompts: the field holding the prompt.", nonempty());
  s.field("template", c.prompt_template,
          "Template around each prompt, as prepare.template: none, alpaca, or a text with {prompt}.",
          nonempty());
  s.field("tokenizer", c.tokenizer,
          "Empty = the checkpoint's (as eval.tokenizer), or byte, or a tokenizer file / model directory.");
  s.field("add_bos", c.add_bos,
          "Start every prompt with the BOS token, else the end-of-text token, unless the tokenizer adds its "
          "own (as eval.add_bos).");
  s.field("max_new_tokens", c.max_new_tokens, "Most tokens generated per prompt.", ge(1));
  s.field("until", c.until,
          "Stop strings: the completion ends before the first one (end-of-text always stops).");
  s.field("temperature", c.temperature, "Sampling temperature; 0 = greedy (argmax).", ge(0));
  s.field("top_k", c.top_k, "Sample among the k most likely tokens only; 0 = all.", ge(0));
  s.field("top_p", c.top_p,
          "Sample from the smallest set of tokens whose probability reaches top_p; 1 = all.",
          Rule{}.gt(0).le(1));
  s.field("seed", c.seed, "Sampling seed: prompt i draws from its own stream (seed, i), whatever the batch.",
          ge(0));
  s.field("batch", c.batch, "Prompts decoded together (one KV cache each).", ge(1));
  s.field("output", c.output, "Completions as JSONL ({prompt, completion, tokens}); empty = print only.");
}

}  // namespace

Schema describe(JobConfig& c) {
  Schema s;
  s.section("run", "Run identity: output directory and seed.");
  describe(c.run, s);
  s.section("data", "Token shards for pretraining and validation.");
  describe(c.data, s);
  s.section("prepare", "The prepare stage: text files -> token shards.");
  describe(c.prepare, s);
  s.section("model", "The transformer: family, shape, and initialisation.");
  describe(c.model, s);
  s.section("optim", "AdamW and the learning-rate schedule.");
  describe(c.optim, s);
  s.section("train", "Batch shape, run length and logging cadence.");
  describe(c.train, s);
  s.section("checkpoint", "Which steps are saved and how many are kept.");
  describe(c.checkpoint, s);
  s.section("inherit", "The inherit stage (Inheritune): copy the first blocks of a larger model.");
  describe(c.inherit, s);
  s.section("average", "The average stage: LAWA, SWA, EMA and interpolation of checkpoints.");
  describe(c.average, s);
  s.section("finetune",
            "Fine-tuning on a sample set: standard, FLOW-weighted, or L2 / L1 to the initial weights.");
  describe(c.finetune, s);
  s.section("finetune.lora",
            "LoRA: train low-rank adapters on the projections instead of the model (any method above).");
  describe(c.finetune.lora, s);
  s.section(
      "flow",
      "FLOW weights w = exp(-loss / tau) from the pre-trained model's per-sample (or per-token) losses.");
  describe(c.flow, s);
  s.section("score", "The score stage: per-sample losses and FLOW weights -> scores.h5.");
  describe(c.score, s);
  s.section(
      "eval",
      "The eval stage: loss and exact match on eval sets, benchmark tasks with standard errors, and the "
      "forgetting table of a tuned vs a base checkpoint.");
  describe(c.eval, s);
  s.section("generate", "The generate stage: completions of prompts with a KV cache (greedy or sampled).");
  describe(c.generate, s);
  return s;
}

void check_train_relations(const JobConfig& c, const std::string& origin) {
  // With model.init_from the model comes from that checkpoint: the trainer checks the relations
  // with the model once it has read it.
  const bool model_known = c.model.init_from.empty();
  if (model_known) {
    try {
      resolve_model(c.model);
    } catch (const ConfigError& e) {
      fail<ConfigError>("{}: {}", origin, e.what());
    }
  }
  if (model_known && c.train.seq_len > c.model.block_size)
    fail<ConfigError>("{}: train.seq_len = {} must be <= model.block_size = {}", origin, c.train.seq_len,
                      c.model.block_size);
  if (c.train.global_batch % c.train.micro_batch != 0)
    fail<ConfigError>("{}: train.global_batch = {} must be a multiple of train.micro_batch = {}", origin,
                      c.train.global_batch, c.train.micro_batch);
  if (c.optim.min_lr > c.optim.lr)
    fail<ConfigError>("{}: optim.min_lr = {} must be <= optim.lr = {}", origin, c.optim.min_lr, c.optim.lr);
  if (c.optim.warmup_steps > c.train.max_steps)
    fail<ConfigError>("{}: optim.warmup_steps = {} must be <= train.max_steps = {}", origin,
                      c.optim.warmup_steps, c.train.max_steps);
  // A token id the model cannot embed would only fail deep inside the first forward pass.
  if (model_known && c.data.vocab_size > c.model.vocab_size)
    fail<ConfigError>("{}: data.vocab_size = {} must be <= model.vocab_size = {}", origin, c.data.vocab_size,
                      c.model.vocab_size);
}

}  // namespace flowlm::config
