// Hugging Face model directories <-> flowlm checkpoints: config.json <-> ModelConfig for
// GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and Gemma2ForCausalLM,
// and the import / export of their safetensors weights, one tensor in memory at a time. Our
// tensor names are Hugging Face's, so the weights map one to one (GPT-2 keeps its Conv1D
// [in, out] layout on both sides).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/model_config.hpp"
#include "io/safetensors.hpp"
#include "model/tensors.hpp"

namespace flowlm::model {

/// \brief The Hugging Face architectures flowlm imports and exports.
const std::vector<std::string>& hf_architectures();

/// \brief A model config read from config.json.
struct HfConfig {
  ModelConfig cfg;                 ///< resolved
  std::string architecture;        ///< e.g. "LlamaForCausalLM"
  std::vector<std::string> notes;  ///< keys read but without effect here (dropout, ...), for the log
};

/// \brief Maps a config.json (`file` names it in errors). ConfigError naming the file, key and value
/// for an unsupported architecture, or a field whose value flowlm cannot represent (rope_scaling,
/// another activation, biases other than the family's, ...). Unknown keys are listed in `notes`.
HfConfig config_from_hf(const nlohmann::json& j, const std::string& file);

/// \brief The architecture a config exports as: Qwen2 for qkv biases, Mistral for a sliding window on
/// every layer, Llama otherwise (arch llama); GPT2LMHeadModel; Gemma2ForCausalLM.
std::string default_hf_architecture(const ModelConfig& cfg);

/// \brief config.json for `cfg` as `architecture` ("" = default_hf_architecture). ConfigError naming
/// the first field the architecture cannot express (the json is read back and compared).
nlohmann::json config_to_hf(const ModelConfig& cfg, std::string architecture, io::SafetensorsDType dtype);

/// \brief Files copied along with the weights (tokenizer and generation settings), when present.
const std::vector<std::string>& hf_side_files();

/// \brief `flowlm import <hf_dir> <out.h5>`: rank 0 reads config.json and the safetensors weights
/// and writes a step-0 checkpoint (kind "import"); the tokenizer files go to `<out>.tokenizer/`, recorded
/// in the checkpoint's `tokenizer` attribute. Collective (the other ranks wait and share errors).
void import_hf(const std::filesystem::path& hf_dir, const std::filesystem::path& out,
               const comm::Communicator& world);

/// \brief The tokenizer directory recorded by a checkpoint (import records one), or by the checkpoints
/// it started from (model.init_from, inherit.from), or empty when none is found.
std::filesystem::path checkpoint_tokenizer(const std::filesystem::path& checkpoint);

/// \brief Options of `flowlm export`.
struct ExportOptions {
  io::SafetensorsDType dtype = io::SafetensorsDType::f32;
  std::string architecture;                      ///< "" = default_hf_architecture
  std::int64_t max_shard_bytes = 5'000'000'000;  ///< transformers' default, 5 GB
  std::filesystem::path tokenizer;  ///< "" = the checkpoint's, or that of the model it started from
  bool adapter = false;  ///< LoRA checkpoints: PEFT's adapter_config.json + adapter_model.safetensors
};

/// \brief `flowlm export <ckpt.h5> <hf_dir>`: config.json, model.safetensors (or shards and an index)
/// and the tokenizer files; a LoRA checkpoint exports its base with the adapters folded in, or with
/// opt.adapter only the adapters in PEFT's format. Collective (rank 0 writes).
void export_hf(const std::filesystem::path& checkpoint, const std::filesystem::path& hf_dir,
               const ExportOptions& opt, const comm::Communicator& world);

}  // namespace flowlm::model
