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

/// \brief AdamW with flat moments m, v in the model's parameter layout, on one backend; for the
/// whole flat buffer or (ZeRO-1) for one slice of it.
class AdamW {
 public:
  /// \brief Moments for every tensor of `table` (zero) on `backend`, step count 0; the backend
  /// must outlive the optimizer.
  AdamW(const std::vector<model::ParamSpec>& table, const AdamWParams& hp, kernels::Backend& backend)
      : AdamW(table, hp, backend, 0, -1) {}
  /// \brief Moments for the elements [begin, end) of the flat buffer only (end = -1: to the
  /// end): step() updates those alone and m(), v() hold end - begin values.
  AdamW(const std::vector<model::ParamSpec>& table, const AdamWParams& hp, kernels::Backend& backend,
        index_t begin, index_t end);
  AdamW(const model::Transformer& gpt, const AdamWParams& hp) : AdamW(gpt.param_table(), hp, gpt.backend()) {}

  /// \brief One update of the slice with g = grads * grad_scale; increments step_count() first
  /// (the bias correction uses the new count, >= 1). Views of size() (the whole flat buffer) on
  /// the optimizer's backend; elements outside the slice are neither read nor written.
  void step(const kernels::TensorView& params, const kernels::TensorView& grads, float lr,
            float grad_scale = 1.0f);
  /// \brief The same on host pointers (host backends only).
  void step(float* params, const float* grads, float lr, float grad_scale = 1.0f);

  /// \brief First and second moments of the slice [slice_end() - slice_begin()] as host
  /// pointers, for checkpoints (host backends).
  float* m() { return host(m_); }
  const float* m() const { return host(m_); }
  float* v() { return host(v_); }
  const float* v() const { return host(v_); }
  /// \brief Elements of the whole flat buffer.
  index_t size() const { return size_; }
  /// \brief The slice of the flat buffer this optimizer updates.
  index_t slice_begin() const { return begin_; }
  index_t slice_end() const { return end_; }

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
  index_t size_ = 0, begin_ = 0, end_ = 0;
  kernels::Buffer m_, v_;
  long step_ = 0;
};

/// \brief ZeRO-1 slices of a contiguous parameter table over `ranks` ranks: ranks + 1 offsets,
/// rank r updating [bounds[r], bounds[r + 1]). Each bound is r * total / ranks moved up to the
/// next row boundary of the tensor it falls in, so each rank's part of a tensor is whole rows
/// (one hyperslab of the checkpoint dataset). Deterministic; slices may be empty for tiny tables.
std::vector<index_t> zero_slices(const std::vector<model::ParamSpec>& table, int ranks);

/// \brief Rows [first, first + count) of tensor `p` inside the flat slice [begin, end) (count 0
/// when they do not meet); the slice's bounds must fall on row boundaries of `p` (zero_slices).
struct RowRange {
  index_t first = 0, count = 0;
};
RowRange rows_in_slice(const model::ParamSpec& p, index_t begin, index_t end);

/// \brief Factor that scales gradients of global norm `grad_norm` to at most `max_norm`:
/// max_norm / grad_norm when grad_norm > max_norm > 0, else 1 (max_norm <= 0 disables).
float clip_scale(double grad_norm, double max_norm);

}  // namespace flowlm::train
