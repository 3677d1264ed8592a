// One decoder-only transformer for every family (GPT-2, Llama and its relatives, Gemma-2),
// built from its config and tensor table over the kernel Backend: parameters in one flat buffer
// in table order, forward and backward per layer, activations in one reusable arena (llm.c
// style). Nothing here depends on the architecture's name except through the config.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/types.hpp"
#include "kernels/backend.hpp"
#include "model/lora.hpp"
#include "model/tensors.hpp"

namespace flowlm::model {

/// \brief The model, fp32 parameters on the backend chosen by name (run.backend).
///
/// One pass: `forward(tokens, targets, mask, B, T)`, then `backward(dlosses)` accumulates into
/// `grads()` (call `zero_grad()` once per optimizer step). Host pointers (params(), grads(),
/// logits(), token_losses()) are available on host backends; elsewhere they throw.
class Transformer {
 public:
  /// \brief Resolves the config, builds the tensor table and allocates parameters (zero; call
  /// init_random or load a checkpoint). ConfigError for a bad config or backend name.
  explicit Transformer(const ModelConfig& cfg, const std::string& backend = "host");

  /// \brief The resolved config (every derived field filled in).
  const ModelConfig& config() const { return cfg_; }
  kernels::Backend& backend() const { return *backend_; }
  index_t num_params() const { return num_params_; }

  /// \brief The flat parameter buffer, layout = param_table() order.
  float* params();
  const float* params() const;
  /// \brief The flat gradient buffer (same layout), allocated (zeroed) on first call.
  float* grads();
  /// \brief The gradient buffer, or null when no gradient was ever requested.
  const float* grads() const;
  /// \brief Sets every gradient to zero (allocates the buffer if needed).
  void zero_grad();
  /// \brief The flat parameter / gradient buffers as views [num_params()] on backend(), for
  /// backend ops (optimizer, EMA, L2-to-init, norms); any backend.
  kernels::TensorView params_view() const { return params_.view(); }
  kernels::TensorView grads_view();
  /// \brief Per-token losses [B*T] of the last forward, as a view on backend().
  kernels::TensorView token_losses_view() const;

  /// \brief Adds LoRA adapters (zero: call lora()->init_random or load them) and freezes the
  /// base: from now on backward() accumulates into the adapters' gradients only, and the
  /// trainable_* views are the adapters'. ConfigError for a bad spec (see Lora).
  void enable_lora(const config::LoraConfig& spec);
  /// \brief The adapters, or null without LoRA.
  Lora* lora() { return lora_.get(); }
  const Lora* lora() const { return lora_.get(); }
  /// \brief Folds the adapters into the weights (W += s B A) and removes them: the model is a
  /// plain model again, with the same outputs to float rounding.
  void merge_lora();
  /// \brief What training updates: the whole parameter table, or the adapters with LoRA.
  const std::vector<ParamSpec>& trainable_table() const { return lora_ ? lora_->table() : table_; }
  index_t num_trainable() const { return lora_ ? lora_->num_params() : num_params_; }
  kernels::TensorView trainable_params_view() const { return lora_ ? lora_->params_view() : params_view(); }
  kernels::TensorView trainable_grads_view() { return lora_ ? lora_->grads_view() : grads_view(); }

  /// \brief Bytes of the activation arena a forward of B x T allocates (training keeps every
  /// layer's), and of the scratch its backward adds; for the trainer's memory report.
  std::size_t activation_bytes(index_t B, index_t T, bool training) const;
  std::size_t backward_scratch_bytes(index_t B, index_t T) const;

  const std::vector<ParamSpec>& param_table() const { return table_; }
  /// \brief The spec of a named tensor; throws Error naming the unknown name.
  const ParamSpec& param_spec(const std::string& hf_name) const;
  /// \brief Pointer to a named tensor in params(); throws Error naming the unknown name.
  float* param(const std::string& hf_name);
  const float* param(const std::string& hf_name) const;

  /// \brief Random init from the tensor table: weights N(0, 0.02), output projections
  /// N(0, 0.02 / sqrt(2 n_layer)), biases 0, norm weights 1 (0 for the 1 + w form). Portable:
  /// each tensor draws from its own stream seeded by (seed, name).
  void init_random(std::uint64_t seed);

  /// \brief Runs the model on tokens[B,T] (int32). With targets[B,T] (may be null: logits only)
  /// fills token_losses() (0 where mask[B,T] == 0; mask may be null = all count) and returns their
  /// mean over counted tokens (0 when none counts). T <= block_size with learned positions.
  /// training=false keeps no activations for backward (one layer's buffers are reused).
  /// Throws DataError for a token or counted target outside [0, vocab_size).
  float forward(const std::int32_t* tokens, const std::int32_t* targets, const float* mask, index_t B,
                index_t T, bool training = true);

  /// \brief Per-token losses [B*T] of the last forward.
  const float* token_losses() const;
  /// \brief Logits [B*T, V] of the last forward (after the final soft-cap); backward may
  /// overwrite them with their gradient.
  const float* logits() const;
  /// \brief Number of tokens with mask != 0 in the last forward (B*T without a mask).
  index_t counted_tokens() const { return last_count_; }

  /// \brief Accumulates d(sum_n dlosses[n] * losses[n]) / d(params) into grads() for the last
  /// forward, which must have been a training-mode forward with targets. dlosses[B*T] may be
  /// null: the gradient of the mean loss that forward returned.
  void backward(const float* dlosses = nullptr);

 private:
  /// Table indices of one block's tensors (-1 where the family has none).
  struct LayerTensors {
    index_t attn_norm_w = -1, attn_norm_b = -1, qkv_w = -1, qkv_b = -1, out_w = -1, out_b = -1,
            attn_post = -1, mlp_norm_w = -1, mlp_norm_b = -1, in_w = -1, in_b = -1, down_w = -1, down_b = -1,
            mlp_post = -1;
  };
  /// Offsets (elements) of one layer's activations within its block of the arena.
  struct LayerLayout {
    index_t h1, n1_mean, n1_rstd, qkv, att_y, att, ao, ao_n, ao_rstd, r, h2, n2_mean, n2_rstd, fc, act, mo,
        mo_n, mo_rstd, x_out, stride;
  };
  /// Views of one layer's activations.
  struct LayerActs {
    kernels::TensorView h1, n1_mean, n1_rstd, qkv, att_y, att, ao, ao_n, ao_rstd, r, h2, n2_mean, n2_rstd, fc,
        act, mo, mo_n, mo_rstd, x_out;
  };

  void index_layers();
  /// The arena layout of a B x T forward.
  struct ArenaPlan {
    LayerLayout lay;
    index_t x0, layers, hf, hf_mean, hf_rstd, logits, losses, total;
  };
  ArenaPlan plan_activations(index_t B, index_t T, bool training) const;
  void layout_activations(index_t B, index_t T, bool training);
  index_t backward_scratch_floats(index_t B, index_t T) const;
  /// A projection's weight for the forward: its parameters, or with LoRA on its group the
  /// merged W + s B A.
  kernels::TensorView weight(index_t t, const Shape& shape);
  /// The backward of a projection's matmul: dinp, and the weight and bias gradients unless the
  /// base is frozen (with LoRA the adapters' gradients instead).
  void projection_backward(const kernels::TensorView& dinp, index_t w, const Shape& wshape, index_t b,
                           const Shape& bshape, const kernels::TensorView& dout,
                           const kernels::TensorView& inp);
  /// A norm's weight or bias gradient: its slot in grads(), or a discarded buffer when frozen.
  kernels::TensorView norm_grad(index_t t);
  LayerActs layer_acts(index_t l) const;
  kernels::TensorView act_view(index_t offset, Shape shape) const;
  /// The residual stream entering layer l (the embedding output for l = 0 or in inference).
  kernels::TensorView residual_in(index_t l) const;
  /// A tensor (or, for a fused group, `rows` x the tensor's columns starting at it) of params / grads.
  kernels::TensorView pview(index_t t, const Shape& shape) const;
  kernels::TensorView pview(index_t t) const;
  kernels::TensorView gview(index_t t, const Shape& shape) const;
  kernels::TensorView gview(index_t t) const;
  kernels::TensorView absent() const { return kernels::TensorView{}; }

  void norm_forward(const kernels::TensorView& out, const kernels::TensorView& mean,
                    const kernels::TensorView& rstd, const kernels::TensorView& in, index_t w, index_t b);
  void norm_backward(const kernels::TensorView& din, const kernels::TensorView& dout,
                     const kernels::TensorView& in, const kernels::TensorView& mean,
                     const kernels::TensorView& rstd, index_t w, index_t b);
  kernels::AttentionParams attention_params(index_t l, index_t B, index_t T) const;
  kernels::RopeParams rope_params(index_t B, index_t T) const;
  void require_host(const char* what) const;

  ModelConfig cfg_;
  std::unique_ptr<kernels::Backend> backend_;
  std::vector<ParamSpec> table_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<LayerTensors> layers_;
  index_t tok_embed_ = -1, pos_embed_ = -1, final_norm_w_ = -1, final_norm_b_ = -1, head_ = -1;
  kernels::WeightLayout layout_ = kernels::WeightLayout::conv1d;
  index_t qkv_rows_ = 0, in_cols_ = 0;  // fused widths: (H + 2K) d and F or 2F
  index_t num_params_ = 0;
  kernels::Buffer params_, grads_;
  std::unique_ptr<Lora> lora_;
  kernels::Buffer norm_sink_;  ///< receives norm gradients of a frozen base

  kernels::Buffer acts_, scratch_, tokens_, targets_, mask_, dlosses_;
  index_t acts_size_ = 0, scratch_size_ = 0;
  LayerLayout lay_{};
  index_t off_x0_ = 0, off_layers_ = 0, off_hf_ = 0, off_hf_mean_ = 0, off_hf_rstd_ = 0, off_logits_ = 0,
          off_losses_ = 0;
  index_t B_ = 0, T_ = 0;
  bool have_forward_ = false, last_training_ = false, last_has_targets_ = false, last_has_mask_ = false;
  index_t last_count_ = 0;
};

}  // namespace flowlm::model
