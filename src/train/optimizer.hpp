// AdamW over the model's flat parameter buffer (moments on the model's backend), and global
// gradient-norm clipping.
#pragma once

#include <vector>

#include "core/types.hpp"
#include "kernels/backend.hpp"
#include "model/transformer.hpp"

namespace flowlm::train {

/// \brief AdamW hyperparameters (decoupled weight decay, bias-corrected moments).
struct AdamWParams {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float eps = 1e-8f;
  float weight_decay = 0.1f;
  bool decay_embeddings = false;  ///< also decay wte/wpe; biases and LayerNorm params never decay
};

/// \brief AdamW with flat moments m, v in the model's parameter layout, on one backend.
class AdamW {
 public:
  /// \brief Moments for every tensor of `table` (zero) on `backend`, step count 0; the backend
  /// must outlive the optimizer.
  AdamW(const std::vector<model::ParamSpec>& table, const AdamWParams& hp, kernels::Backend& backend);
  AdamW(const model::Transformer& gpt, const AdamWParams& hp) : AdamW(gpt.param_table(), hp, gpt.backend()) {}

  /// \brief One update of the whole flat buffer with g = grads * grad_scale; increments
  /// step_count() first (the bias correction uses the new count, >= 1). Views of size() on the
  /// optimizer's backend.
  void step(const kernels::TensorView& params, const kernels::TensorView& grads, float lr,
            float grad_scale = 1.0f);
  /// \brief The same on host pointers (host backends only).
  void step(float* params, const float* grads, float lr, float grad_scale = 1.0f);

  /// \brief First and second moments [size()] as host pointers, for checkpoints (host backends).
  float* m() { return host(m_); }
  const float* m() const { return host(m_); }
  float* v() { return host(v_); }
  const float* v() const { return host(v_); }
  index_t size() const { return size_; }

  /// \brief Updates taken so far (restored from a checkpoint with set_step_count).
  long step_count() const { return step_; }
  void set_step_count(long step) { step_ = step; }

  const AdamWParams& hparams() const { return hp_; }
  /// \brief Whether weight decay applies to this tensor under these hyperparameters.
  static bool decays(const model::ParamSpec& p, const AdamWParams& hp) {
    return p.is_matrix || (p.is_embedding && hp.decay_embeddings);
  }

 private:
  /// A contiguous run of tensors with the same weight decay.
  struct Run {
    index_t offset, numel;
    bool decay;
  };
  float* host(const kernels::Buffer& b) const;

  AdamWParams hp_;
  kernels::Backend* backend_;
  std::vector<Run> runs_;
  index_t size_ = 0;
  kernels::Buffer m_, v_;
  long step_ = 0;
};

/// \brief Factor that scales gradients of global norm `grad_norm` to at most `max_norm`:
/// max_norm / grad_norm when grad_norm > max_norm > 0, else 1 (max_norm <= 0 disables).
float clip_scale(double grad_norm, double max_norm);

}  // namespace flowlm::train
