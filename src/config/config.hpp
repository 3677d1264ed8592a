// Job files: TOML parsed once into typed structs. Defaults live only in the member
// initialisers below; the key names, docs and constraints live in the field tables of
// schema.cpp, and one generic engine (config.cpp) parses, checks, overrides and prints.
//
// Required keys: none globally. A stage checks what it needs with require_nonempty()
// (e.g. `prepare` needs prepare.inputs), so one job file can serve every stage.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "config/model_config.hpp"

namespace flowlm::config {

/// \brief Where a run writes and how it is seeded.
struct RunConfig {
  std::string dir = "runs/default";
  std::int64_t seed = 1337;
  std::string backend = "host";      // host | reference | cuda (kernels/make_backend)
  double collective_timeout = 1800;  // s one collective may wait before the job ends; 0 = never
};

/// \brief Token shards for pretraining / validation.
struct DataConfig {
  std::vector<std::string> train;  // paths or globs of llm.c .bin shards or raw uint16 .bin
  std::vector<std::string> val;
  std::int64_t vocab_size = 256;  // tokens must be < vocab_size
};

/// \brief The `prepare` stage: text files -> token shards.
struct PrepareConfig {
  std::vector<std::string> inputs;  // text files or globs (required for prepare)
  std::string output_dir = "data";  // writes <output_dir>/<name>_train_NNNNNN.bin, _val_
  std::string name = "text";
  std::string tokenizer = "byte";         // "byte" (vocab 256) or a tokenizer file / HF model directory
  double val_fraction = 0.1;              // in [0, 0.5]
  std::int64_t shard_tokens = 100000000;  // max tokens per shard, >= 1024
  std::string format = "text";            // "text" (token shards) or "jsonl" (sample sets)
  std::string prompt_field = "prompt";    // jsonl: field holding the prompt (masked out of the loss)
  std::string answer_field = "answer";    // jsonl: field holding the answer (counts for the loss)
  std::int64_t block_size = 256;          // jsonl: max model input tokens per sample (length - 1)
  std::string overlong = "error";         // jsonl: a sample over block_size: error | truncate | drop
  std::string prompt_template = "none";   // jsonl (key "template"): none | alpaca | text with {prompt}
};

/// \brief AdamW and the learning-rate schedule.
struct OptimConfig {
  double lr = 6e-4, min_lr = 6e-5, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double grad_clip = 1.0;  // 0 disables
  // "cosine" (warmup then cosine to min_lr), "constant" (after warmup), "wsd"
  std::string schedule = "cosine";
  std::int64_t warmup_steps = 100;
  double decay_fraction = 0.2;    // wsd: last fraction of max_steps decays linearly to min_lr
  bool decay_embeddings = false;  // weight decay on wte/wpe (never on biases and norms)
  std::int64_t zero_stage = 0;    // 1 = ZeRO-1: each rank keeps the AdamW moments of 1/ranks of the weights
};

/// \brief Batch shape, length of the run and logging cadence.
struct TrainConfig {
  std::int64_t global_batch = 8;  // sequences per optimizer step, all ranks together
  std::int64_t micro_batch = 8;   // sequences per rank per forward/backward
  std::int64_t seq_len = 256;     // T, <= model.block_size
  std::int64_t max_steps = 1000;
  std::int64_t log_every = 10, val_every = 100, val_batches = 20;
  bool resume = false;
  double ema_decay = 0.0;  // online EMA of the weights, saved as ema_step_N.h5; 0 = off
};

/// \brief Which steps are saved and how many are kept.
struct CheckpointConfig {
  std::int64_t save_every = 0;           // 0 = only the steps listed and the final step
  std::vector<std::int64_t> save_steps;  // extra steps to save at (LAWA spacing)
  std::int64_t keep_last = 0;            // 0 = keep all
  bool save_final = true;
};

/// \brief The inherit stage (Inheritune): a small model from the first blocks of a larger one.
struct InheritConfig {
  std::string from;                  // source checkpoint (required by inherit)
  std::string output;                // checkpoint to write (required by inherit)
  std::int64_t layers = 0;           // copy blocks 0..layers-1; 0 = half of the source's blocks
  std::vector<std::int64_t> blocks;  // explicit source block indices (overrides layers when set)
  bool token_embedding = true;       // wte (GPT-2 ties the LM head to it)
  bool position_embedding = true;    // wpe (the reference code leaves it at random init)
  bool final_norm = true;            // ln_f (the reference code leaves it at random init)
  bool head = true;                  // the LM head (tied: the same tensor as wte)
};

/// \brief The average stage: LAWA, SWA, EMA over saved checkpoints, and interpolation (WiSE-FT).
struct AverageConfig {
  std::string mode = "lawa";        // lawa | swa | ema | interpolate
  std::vector<std::string> inputs;  // run directories, checkpoint files or globs
  std::string output_dir;           // where averaged checkpoints go (required by average)
  std::int64_t k = 5;               // lawa: checkpoints per window
  std::int64_t every = 0;       // lawa: spacing in steps between averaged checkpoints; 0 = every saved one
  bool grouped = false;         // lawa: non-overlapping groups instead of a sliding window
  std::int64_t start_step = 0;  // swa/ema: first step included
  std::int64_t end_step = -1;   // swa/ema: last step included; -1 = the last checkpoint
  double decay = 0.9;           // ema: weight of the running average
  std::vector<double> alphas = {0.5};  // interpolate: alpha * inputs[0] + (1 - alpha) * inputs[1]
};

/// \brief flow.tau: "median" (default), a number, or {quantile = q} (global over all samples).
struct TauSpec {
  enum class Kind { median, value, quantile };
  Kind kind = Kind::median;
  double value = 0.5;  ///< the temperature (value) or q (quantile); 0.5 for median
  bool operator==(const TauSpec& o) const { return kind == o.kind && value == o.value; }
  bool operator!=(const TauSpec& o) const { return !(*this == o); }
};

/// \brief Fine-tuning on a sample set (`flowlm train` with finetune.train_set).
/// \brief LoRA adapters (finetune.lora): delta W = (alpha / r) * B A on the target projections.
struct LoraConfig {
  std::int64_t r = 0;                // rank; 0 = full fine-tuning (no adapters)
  double alpha = 0.0;                // scale numerator; 0 = r (scale 1)
  double dropout = 0.0;              // input dropout of the adapters (only 0 is supported)
  std::vector<std::string> targets;  // module names (q_proj, c_attn, ...); empty = every projection
};

struct FinetuneConfig {
  std::string method = "standard";  // standard | flow | l2_init | l1_init
  std::string train_set = "";       // sample set (.h5); empty = pretraining on data.train shards
  std::string scores = "";          // scores.h5 from `flowlm score` (method = flow)
  std::int64_t epochs = 0;          // > 0: train.max_steps = ceil(epochs * samples / global_batch)
  double l2_lambda = 0.0;           // l2_init: lambda of lambda * sum((theta - theta0)^2) / num_params
  double l1_lambda = 0.0;           // l1_init: lambda of lambda * sum(|theta - theta0|) / num_params
  LoraConfig lora;
};

/// \brief FLOW weighting: w_i = exp(-l_i / tau), optionally normalised to mean 1.
struct FlowConfig {
  TauSpec tau;
  std::string normalize = "mean";      // mean | none
  std::string granularity = "sample";  // sample (w_i) | token (w_it) | both (w_i * w_it)
};

/// \brief The score stage: per-sample losses of a pre-trained checkpoint -> scores.h5.
struct ScoreConfig {
  std::string checkpoint = "";  // pre-trained checkpoint (required by score)
  std::string sample_set = "";  // sample set to score (required by score)
  std::string output = "";      // scores file; empty = <run.dir>/scores.h5
  std::int64_t batch = 16;      // samples per forward (fixed global groups: results do not depend on ranks)
};

/// \brief The eval stage: checkpoints x (eval sets and benchmark tasks) -> eval.jsonl.
struct EvalConfig {
  std::vector<std::string> checkpoints;  // checkpoint files, run directories or globs
  std::vector<std::string> sets;         // token shards (.bin, globs) or sample sets (.h5)
  std::vector<std::string> tasks;        // task files (.toml, globs): multiple_choice, generate, rolling
  std::string output = "";               // eval.jsonl path; empty = <run.dir>/eval.jsonl
  std::int64_t micro_batch = 16;         // sequences per forward
  std::int64_t max_samples = 0;          // per sample set / task: first N only; 0 = all
  std::int64_t max_windows = 0;          // per token set: first N windows only; 0 = all
  std::int64_t seq_len = 0;              // token sets: window length; 0 = the checkpoint's block_size
  std::string tokenizer = "";            // tasks: "" = the checkpoint's, "byte", or a tokenizer path
  bool add_bos = false;                  // tasks: every context after BOS (else end-of-text)
  std::int64_t num_fewshot = -1;         // tasks: -1 = each task's own num_fewshot
  std::int64_t fewshot_seed = -1;        // tasks: -1 = each task's own fewshot_seed
  std::vector<std::string> compare;      // two checkpoints (base, tuned): the forgetting table
  std::string samples_dir = "";          // per-item records of tasks and sample sets; empty = none
};

/// \brief The generate stage: completions of prompts by a checkpoint, with a KV cache.
struct GenerateConfig {
  std::string checkpoint = "";           // the model (required by generate)
  std::vector<std::string> prompts;      // prompts given in the job
  std::string prompts_file = "";         // more prompts: a text file (one per line) or JSONL
  std::string prompt_field = "prompt";   // JSONL: the field holding the prompt
  std::string prompt_template = "none";  // key "template": prepare's templates
  std::string tokenizer = "";            // "" = the checkpoint's, "byte", or a tokenizer path
  bool add_bos = false;                  // every prompt after BOS (else end-of-text)
  std::int64_t max_new_tokens = 64;
  std::vector<std::string> until;  // stop strings (the end-of-text token always stops)
  double temperature = 0.0;        // 0 = greedy
  std::int64_t top_k = 0;          // 0 = no top-k cut
  double top_p = 1.0;              // 1 = no nucleus cut
  std::int64_t seed = 1;           // sampling seed (per prompt streams)
  std::int64_t batch = 16;         // prompts decoded together
  std::string output = "";         // completions as JSONL; empty = print only
};

/// \brief One job file, every section resolved.
struct JobConfig {
  RunConfig run;
  DataConfig data;
  PrepareConfig prepare;
  ModelConfig model;
  OptimConfig optim;
  TrainConfig train;
  CheckpointConfig checkpoint;
  InheritConfig inherit;
  AverageConfig average;
  FinetuneConfig finetune;
  FlowConfig flow;
  ScoreConfig score;
  EvalConfig eval;
  GenerateConfig generate;
  /// Where the job came from (file name, or e.g. a checkpoint attribute), for messages; not a key.
  std::string origin;
  /// The [model] keys the job file or --set gave (the others hold family defaults); not a key.
  std::vector<std::string> model_keys_given;
};

/// \brief The checks between keys that `stage` relies on (train: n_embd % n_head,
/// seq_len <= block_size, batch and schedule relations, data vs model vocabulary). Other
/// stages take the model shape from their checkpoints, so a job's [model] or [train]
/// section does not hold them back. Throws ConfigError naming the file, keys and values.
void check_stage(const JobConfig& c, const std::string& stage);

/// \brief Loads a job file and applies "section.key=value" overrides (from `--set`, in
/// order; the last one wins). Throws IoError when the file cannot be read, ConfigError
/// for malformed TOML, unknown keys, wrong types and out-of-range values (relations between
/// keys are the stage's: check_stage).
JobConfig load_job(const std::filesystem::path& file, const std::vector<std::string>& overrides = {});

/// \brief Same as load_job from TOML text; `origin` names it in errors (a file name, or
/// e.g. a checkpoint's config_toml attribute).
JobConfig parse_job(const std::string& toml_text, const std::string& origin,
                    const std::vector<std::string>& overrides = {});

/// \brief The fully resolved config as TOML (every key, defaults included);
/// parse_job(to_toml(c), ...) == c.
std::string to_toml(const JobConfig& c);

/// \brief Every section and key with its type, constraints, default and a one-line doc,
/// as commented TOML that itself parses to the defaults.
std::string reference_toml();

/// \brief The keys of one section as help text ("  key = default  (type, constraints)\n      doc"),
/// empty for a name that is no section; for `flowlm <stage> --help`.
std::string section_help(const std::string& section);

/// \brief The dotted keys ("optim.lr") whose values differ between a and b, in schema order.
std::vector<std::string> changed_keys(const JobConfig& a, const JobConfig& b);

/// \brief Every key of the schema, dotted ("optim.lr"), in schema order.
std::vector<std::string> all_keys();

bool operator==(const JobConfig& a, const JobConfig& b);
bool operator!=(const JobConfig& a, const JobConfig& b);

/// \brief For stages: throws ConfigError naming `key` and `stage` when `value` is empty.
void require_nonempty(const std::vector<std::string>& value, const std::string& key,
                      const std::string& stage);
/// \brief For stages: throws ConfigError naming `key` and `stage` when `value` is empty.
void require_nonempty(const std::string& value, const std::string& key, const std::string& stage);

}  // namespace flowlm::config
