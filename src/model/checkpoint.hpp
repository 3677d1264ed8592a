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

/// \brief Loads every tensor of `model`'s table from `ckpt` (IoError naming the file and the
/// dataset when one is missing or of another shape). The checkpoint's own model config, when it
/// has one, must describe the same architecture.
void load_weights(Transformer& model, const io::CheckpointReader& ckpt);

/// \brief The job with the model config of its model.init_from checkpoint (unchanged without one):
/// a model starts from a checkpoint with that checkpoint's architecture. A [model] key the job gives
/// explicitly must agree with it (ConfigError naming the key, both values and the file).
config::JobConfig with_init_from_model(const config::JobConfig& job);

/// \brief A model with the config and weights of `checkpoint` on `backend`.
std::unique_ptr<Transformer> load_model(const std::filesystem::path& checkpoint,
                                        const std::string& backend = "host");

}  // namespace flowlm::model
