// The tensor-spec table of a model config (llm.c's TensorSpec, llama.cpp's per-arch tensor
// lists): Hugging Face names and shapes, role, init and weight decay of every tensor. Allocation,
// init, checkpoints, inherit, import/export and the optimizer read it; nothing matches names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/model_config.hpp"
#include "core/types.hpp"

namespace flowlm::model {

using config::ModelConfig;

/// \brief A GPT-2 config of the given shape (the other fields at their GPT-2 defaults).
ModelConfig gpt2_config(std::int64_t n_layer, std::int64_t n_head, std::int64_t n_embd,
                        std::int64_t vocab_size, std::int64_t block_size);

/// \brief Number of parameters (without building the model).
index_t count_params(const ModelConfig& cfg);

/// \brief What a tensor is, for the forward pass and for readers that treat kinds alike.
enum class Role {
  tok_embed,   ///< [V, C]
  pos_embed,   ///< [block_size, C]
  attn_norm,   ///< pre-attention norm weight / bias [C]
  qkv,         ///< fused q, k, v projection (GPT-2 c_attn [C, (H+2K)d]; or q/k/v_proj [rows, C] in a row)
  attn_out,    ///< [C, H d] (linear) or [C, C] (conv1d)
  attn_post,   ///< Gemma-2 post-attention norm [C]
  mlp_norm,    ///< pre-MLP norm [C]
  mlp_in,      ///< fc [C, F] (conv1d) or gate/up [F, C] each, in a row
  mlp_out,     ///< proj [F, C] (conv1d) or down [C, F]
  mlp_post,    ///< Gemma-2 post-feed-forward norm [C]
  final_norm,  ///< [C]
  lm_head,     ///< untied head [V, C]
};

/// \brief How a tensor starts in a random init.
enum class Init { normal, normal_scaled, ones, zeros };

/// \brief One tensor of the flat parameter buffer, in buffer order.
struct ParamSpec {
  std::string name;    ///< Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight"
  Shape shape;         ///< as Hugging Face stores it (Conv1D [in, out], Linear [out, in])
  index_t offset = 0;  ///< first element in the flat buffer
  index_t numel = 0;
  Role role = Role::tok_embed;
  std::int64_t layer = -1;    ///< block index, -1 outside the blocks
  bool is_bias = false;       ///< a bias (of a linear layer or a LayerNorm)
  bool is_matrix = false;     ///< 2-D weight other than the embeddings (weight decay applies)
  bool is_embedding = false;  ///< token or position embedding (decay only with optim.decay_embeddings)
  Init init = Init::normal;
};

/// \brief The tensor-spec table of a (resolved) config in flat-buffer order: embeddings, blocks
/// 0..L-1, final norm, head. Within a block the tensors a fused kernel reads as one matrix are
/// adjacent: q, k, v (then their biases) and gate, up. Resolves and validates cfg first.
std::vector<ParamSpec> make_param_table(const ModelConfig& cfg);

/// \brief The block index l of a parameter named "transformer.h.<l>.<rest>" (GPT-2) or
/// "model.layers.<l>.<rest>" (llama, gemma2), and <rest> when asked; -1 outside the blocks.
std::int64_t param_block(const std::string& name, std::string* rest = nullptr);

/// \brief The same name in block `to` instead of its own (e.g. for inherit); throws Error for a
/// name outside the blocks.
std::string rename_block(const std::string& name, std::int64_t to);

}  // namespace flowlm::model
