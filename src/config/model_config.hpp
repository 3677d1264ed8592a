// The model section of a job and of every checkpoint: one decoder-only transformer described
// by data (GPT-2, Llama and its relatives, Gemma-2), with the family defaults in one place.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/types.hpp"

namespace flowlm::config {

/// \brief The full model config, as stored in the attributes of /model in every checkpoint.
/// Every field is meaningful after resolve_model(); before it, 0 in n_kv_head, head_dim, n_ff,
/// embed_scale and query_scale means "derived from the shape".
struct ModelConfig {
  std::string arch = "gpt2";  ///< gpt2 | llama (also Mistral, Qwen2) | gemma2: tensor names, family defaults
  std::int64_t n_layer = 6;
  std::int64_t n_head = 6;
  std::int64_t n_kv_head = 0;  ///< key/value heads (GQA); 0 = n_head
  std::int64_t head_dim = 0;   ///< 0 = n_embd / n_head
  std::int64_t n_embd = 384;
  std::int64_t n_ff =
      0;  ///< MLP width; 0 = family default (gpt2, gemma2: 4 n_embd; llama: 8/3 n_embd up to 256)
  std::int64_t vocab_size = 256;
  std::int64_t block_size = 256;
  std::string norm = "layernorm";  ///< layernorm | rmsnorm | rmsnorm_plus_one (x * (1 + w), Gemma)
  double norm_eps = 1e-5;
  std::string pos = "learned";  ///< learned (position embedding) | rope
  double rope_theta = 10000.0;
  std::string mlp = "gelu";         ///< gelu (fc -> gelu -> proj) | swiglu | geglu (gated: gate, up, down)
  std::string biases = "all";       ///< all (every linear layer and norm) | none | qkv (Qwen2)
  bool tie_embeddings = true;       ///< LM head = token embedding
  bool post_norms = false;          ///< Gemma-2: norms on the attention and MLP outputs too
  double embed_scale = 1.0;         ///< multiplies the token embeddings; 0 = sqrt(n_embd) (Gemma)
  double attn_softcap = 0.0;        ///< attention logits: s = cap * tanh(s / cap); 0 = none
  double final_softcap = 0.0;       ///< output logits, the same; 0 = none
  std::int64_t sliding_window = 0;  ///< 0 = full causal attention
  std::string sliding_window_layers = "all";  ///< all | alternate (even layers: Gemma-2)
  double query_scale = 0.0;                   ///< factor on q.k; 0 = 1 / sqrt(head_dim)

  std::string init_from =
      "";  ///< the job's checkpoint to start from ("" = random init); not an architecture field

  /// \brief Equal architecture (every field but init_from).
  bool same_architecture(const ModelConfig& o) const;
};

/// \brief Upper bounds of the size fields: far above any real model, low enough that the shape
/// arithmetic (n_ff = 4 n_embd, n_head * head_dim, vocab_size * n_embd, ...) cannot overflow int64.
constexpr std::int64_t kMaxModelLayers = std::int64_t{1} << 16;  ///< n_layer
constexpr std::int64_t kMaxModelHeads = std::int64_t{1} << 16;   ///< n_head, n_kv_head
constexpr std::int64_t kMaxModelWidth = std::int64_t{1} << 20;   ///< n_embd, head_dim
constexpr std::int64_t kMaxModelFF = std::int64_t{1} << 24;      ///< n_ff
constexpr std::int64_t kMaxModelVocab = INT32_MAX;               ///< vocab_size (token ids are int32)
constexpr std::int64_t kMaxModelBlock = std::int64_t{1} << 24;   ///< block_size, sliding_window

/// \brief The architectures with a tensor table: "gpt2", "llama", "gemma2".
const std::vector<std::string>& model_archs();

/// \brief `cfg` with the defaults of `cfg.arch` for every field not in `given` (field names as
/// in the job file, e.g. "norm"), the shape fields kept. Throws ConfigError for an unknown arch.
ModelConfig with_family_defaults(ModelConfig cfg, const std::vector<std::string>& given);

/// \brief The derived fields filled in (n_kv_head, head_dim, n_ff, embed_scale, query_scale),
/// then validate_model()d.
ModelConfig resolve_model(ModelConfig cfg);

/// \brief Throws ConfigError naming the field (as model.<field>) and its value when the config is
/// not a model flowlm can build: sizes positive, n_head a multiple of n_kv_head, choices known,
/// learned positions only with gpt2 names, gated MLPs and post-norms only with llama/gemma2 names,
/// sizes within the kMaxModel* bounds.
void validate_model(const ModelConfig& cfg);

}  // namespace flowlm::config
