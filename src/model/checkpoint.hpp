// The model config in a checkpoint: written as typed attributes of /model, read back so that
// no reader guesses the architecture. Checkpoints of flowlm 0.1 (GPT-2 only, no attributes)
// still load: their shape comes from the tensors and the head count from config_toml.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "config/config.hpp"
#include "io/checkpoint.hpp"
#include "model/tensors.hpp"
#include "model/transformer.hpp"

namespace flowlm::model {

/// \brief The resolved config as /model attributes (every architecture field of ModelConfig).
std::map<std::string, io::AttrValue> model_attrs(const ModelConfig& cfg);

/// \brief The model config of a checkpoint: from the /model attributes when present (IoError
/// naming the file and the attribute when one is missing, of the wrong kind or invalid), else
/// the GPT-2 of flowlm 0.1 (vocab, width, block size and depth from the tensors; n_head from
/// the attribute config_toml, or `fallback_n_head` when that does not parse; 0: none, an
/// IoError). The result is resolved and validated.
ModelConfig read_model_config(const io::CheckpointReader& ckpt, std::int64_t fallback_n_head = 0);

/// \brief Loads every tensor of `model`'s table from `ckpt` (a LoRA checkpoint: the adapters, into
/// a model with adapters; IoError for a model without) (IoError naming the file and the
/// dataset when one is missing or of another shape). The checkpoint's own model config, when it
/// has one, must describe the same architecture.
void load_weights(Transformer& model, const io::CheckpointReader& ckpt);

/// \brief The job with the model config of its model.init_from checkpoint (unchanged without one):
/// a model starts from a checkpoint with that checkpoint's architecture. A [model] key the job gives
/// explicitly must agree with it (ConfigError naming the key, both values and the file).
config::JobConfig with_init_from_model(const config::JobConfig& job);

/// \brief A model with the config and weights of `checkpoint` on `backend`. A LoRA checkpoint
/// gives its base with the adapters folded in (IoError when the base is missing or has changed).
std::unique_ptr<Transformer> load_model(const std::filesystem::path& checkpoint,
                                        const std::string& backend = "host", int depth = 0);

// LoRA checkpoints: /model holds the adapters (PEFT's names and layout, see model/lora.hpp) and
// its attributes the base's config; root attributes lora_base (absolute path of the base
// checkpoint), lora_base_fingerprint (weights_fingerprint of the base), lora_r, lora_alpha and
// lora_targets (comma-separated module names).

/// \brief The base and spec a LoRA checkpoint records.
struct LoraCheckpointInfo {
  std::filesystem::path base;
  std::string base_fingerprint;
  config::LoraConfig spec;
};
bool is_lora_checkpoint(const io::CheckpointReader& ckpt);
/// \brief IoError naming the file and attribute when one is missing or malformed.
LoraCheckpointInfo read_lora_info(const io::CheckpointReader& ckpt);
/// \brief The root attributes above.
void add_lora_meta(io::CheckpointMeta& meta, const Lora& lora, const std::filesystem::path& base,
                   const std::string& base_fingerprint);
/// \brief 16 hex digits identifying the model's weights (host backends): a changed base is caught.
std::string weights_fingerprint(const Transformer& model);
/// \brief Tensor i of model.trainable_table() from a flat host buffer in the trainable layout
/// (parameters, AdamW moments, EMA) as checkpoints store it, and back.
std::vector<float> stored_tensor(const Transformer& model, std::size_t i, const float* flat);
void unstore_tensor(const Transformer& model, std::size_t i, const float* stored, float* flat);
/// \brief `flowlm merge <lora.h5> <out.h5>`: the base of a LoRA checkpoint with its adapters folded
/// in, as a plain checkpoint (step, tokens and config of the LoRA one). Collective; rank 0 writes.
void merge_lora_checkpoint(const std::filesystem::path& in, const std::filesystem::path& out,
                           const comm::Communicator& world);
/// \brief Reads model.lora()'s tensors from a LoRA checkpoint.
void load_adapters(Transformer& model, const io::CheckpointReader& ckpt);

}  // namespace flowlm::model
