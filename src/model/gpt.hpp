// The GPT-2 model: parameters in one flat buffer laid out in Hugging Face order, forward
// and backward through the kernel API, activations in one reusable buffer (llm.c style).
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/types.hpp"

namespace flowlm::model {

/// \brief GPT-2 hyperparameters (Hugging Face names: n_layer, n_head, n_embd, vocab_size,
/// n_positions = block_size).
struct GPTConfig {
  std::int64_t n_layer = 12;
  std::int64_t n_head = 12;
  std::int64_t n_embd = 768;
  std::int64_t vocab_size = 50257;
  std::int64_t block_size = 1024;
};

/// \brief Throws ConfigError naming the bad field unless every size is positive and
/// n_embd is a multiple of n_head.
void validate(const GPTConfig& cfg);

/// \brief Number of parameters of a model with this config (without building it).
index_t count_params(const GPTConfig& cfg);

/// \brief One tensor of the flat parameter buffer.
struct ParamSpec {
  std::string name;    ///< Hugging Face name, e.g. "transformer.h.0.attn.c_attn.weight"
  Shape shape;         ///< Conv1D weights are [in, out]
  index_t offset = 0;  ///< first element in the flat buffer
  index_t numel = 0;
  bool is_matrix = false;     ///< 2-D weight other than the embeddings (weight decay applies)
  bool is_embedding = false;  ///< wte or wpe
};

/// \brief The parameter table of a config, in flat-buffer order: wte, wpe, blocks 0..L-1
/// (ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj; weight then bias), ln_f.
std::vector<ParamSpec> make_param_table(const GPTConfig& cfg);

/// \brief The block index l of a parameter named "transformer.h.<l>.<rest>" (and <rest> when
/// asked), or -1 for a parameter outside the blocks.
std::int64_t param_block(const std::string& name, std::string* rest = nullptr);

/// \brief GPT-2 with a tied LM head, fp32 on the host backend.
///
/// One forward/backward pass: `forward(tokens, targets, mask, B, T)`, then `backward(dlosses)`
/// accumulates into `grads()` (call `zero_grad()` once per optimizer step).
class GPT {
 public:
  /// \brief Builds the parameter table and allocates parameters (zero; call init_random or
  /// load a checkpoint). Throws ConfigError for a bad config.
  explicit GPT(const GPTConfig& cfg);

  const GPTConfig& config() const { return cfg_; }
  index_t num_params() const { return num_params_; }

  /// \brief The flat parameter buffer, layout = param_table() order.
  float* params() { return params_.data(); }
  const float* params() const { return params_.data(); }

  /// \brief The flat gradient buffer (same layout), allocated (zeroed) on first call.
  float* grads();
  /// \brief The gradient buffer, or null when no gradient was ever requested.
  const float* grads() const { return grads_.empty() ? nullptr : grads_.data(); }
  /// \brief Sets every gradient to zero (allocates the buffer if needed).
  void zero_grad();

  const std::vector<ParamSpec>& param_table() const { return table_; }
  /// \brief The spec of a named tensor; throws Error naming the unknown name.
  const ParamSpec& param_spec(const std::string& hf_name) const;
  /// \brief Pointer to a named tensor in params(); throws Error naming the unknown name.
  float* param(const std::string& hf_name);
  const float* param(const std::string& hf_name) const;

  /// \brief GPT-2 init: weights and embeddings N(0, 0.02), attn/mlp c_proj weights
  /// N(0, 0.02/sqrt(2 n_layer)), biases 0, LayerNorm weight 1 and bias 0. Deterministic
  /// and portable: each tensor draws from its own stream seeded by (seed, name).
  void init_random(std::uint64_t seed);

  /// \brief Runs the model on tokens[B,T] (int32). With targets[B,T] (may be null: logits
  /// only) fills token_losses() (0 where mask[B,T] == 0; mask may be null = all count) and
  /// returns their mean over counted tokens (0 when none counts). T <= block_size.
  /// training=false keeps no activations for backward (one layer's buffers are reused).
  /// Throws DataError for a token or counted target outside [0, vocab_size).
  float forward(const std::int32_t* tokens, const std::int32_t* targets, const float* mask, index_t B,
                index_t T, bool training = true);

  /// \brief Per-token losses [B*T] of the last forward.
  const float* token_losses() const;
  /// \brief Logits [B*T, V] of the last forward; backward overwrites them with their gradient.
  const float* logits() const;
  /// \brief Number of tokens with mask != 0 in the last forward (B*T without a mask).
  index_t counted_tokens() const { return last_count_; }

  /// \brief Accumulates d(sum_n dlosses[n] * losses[n]) / d(params) into grads() for the
  /// last forward, which must have been a training-mode forward with targets. dlosses[B*T]
  /// may be null: the gradient of the mean loss that forward returned.
  void backward(const float* dlosses = nullptr);
  /// \brief The same, with the batch given again (null: the copies kept by forward); tokens
  /// and targets must be those of the last forward.
  void backward(const std::int32_t* tokens, const std::int32_t* targets, const float* dlosses);

 private:
  /// Pointers into the activation buffer for one layer.
  struct LayerActs {
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *att, *attproj, *residual2, *ln2, *ln2_mean, *ln2_rstd,
        *fch, *fch_gelu, *fcproj, *residual3;
  };
  /// Offsets (elements) of every activation for the current (B, T, training).
  struct Layout {
    index_t encoded, layers, layer_stride, lnf, lnf_mean, lnf_rstd, logits, losses, total;
    // within one layer's block
    index_t ln1, ln1_mean, ln1_rstd, qkv, atty, att, attproj, residual2, ln2, ln2_mean, ln2_rstd, fch,
        fch_gelu, fcproj, residual3;
  };

  void layout_activations(index_t B, index_t T, bool training);
  LayerActs layer_acts(index_t l);
  /// The residual stream entering layer l (encoded for l = 0 or in inference mode).
  float* residual_in(index_t l);
  float* pw(index_t tensor) { return params_.data() + table_[static_cast<std::size_t>(tensor)].offset; }
  float* gw(index_t tensor) { return grads_.data() + table_[static_cast<std::size_t>(tensor)].offset; }
  /// Index in table_ of tensor k (0..11, block order) of layer l.
  static index_t block_tensor(index_t l, index_t k) { return 2 + l * 12 + k; }

  GPTConfig cfg_;
  std::vector<ParamSpec> table_;
  std::unordered_map<std::string, std::size_t> index_;
  index_t num_params_ = 0;
  std::vector<float> params_;
  std::vector<float> grads_;

  std::vector<float> acts_;          // grows only; offsets recomputed per forward
  std::vector<float> grad_scratch_;  // backward's activation gradients; grows only
  Layout lay_{};
  index_t B_ = 0, T_ = 0;
  bool have_forward_ = false, last_training_ = false, last_has_targets_ = false;
  index_t last_count_ = 0;
  std::vector<std::int32_t> tokens_, targets_;
  std::vector<float> mask_;  // empty = all count
};

}  // namespace flowlm::model
