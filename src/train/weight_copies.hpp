// Copies of the weights the trainer keeps beside the model, on the model's backend: the online
// EMA of the weights (train.ema_decay) and the starting point of L2-to-init fine-tuning.
#pragma once

#include "kernels/backend.hpp"
#include "model/transformer.hpp"

namespace flowlm::io {
class CheckpointReader;
}

namespace flowlm::train {

/// \brief ema = d * ema + (1 - d) * theta after every optimizer step (axpby on the backend).
class WeightEma {
 public:
  /// \brief Starts from the model's current weights.
  WeightEma(const model::Transformer& model, double decay);
  /// \brief Continues from the EMA tensors of `ckpt` (same tensor table as the model).
  void load(const io::CheckpointReader& ckpt, const model::Transformer& model);
  void update(const model::Transformer& model);
  /// \brief The averaged weights in the model's layout (host backends), for checkpoints.
  const float* host_data() const;
  double decay() const { return decay_; }

 private:
  double decay_;
  kernels::Backend* backend_;
  kernels::Buffer ema_;
};

/// \brief L2-to-init: penalty lambda * |theta - theta0|^2 / P, P the trained parameter count (the
/// adapters' with LoRA), so lambda does not depend on the model size.
class L2ToInit {
 public:
  /// \brief theta0 = the model's current weights.
  L2ToInit(const model::Transformer& model, double lambda);
  /// \brief Adds the penalty's gradient 2 lambda (theta - theta0) / P to the model's gradients and
  /// returns the penalty.
  double add_gradient(model::Transformer& model);

 private:
  double lambda_;
  kernels::Backend* backend_;
  kernels::Buffer theta0_, diff_;
};

/// \brief L1-to-init: penalty lambda * sum |theta - theta0| / P (P the trained parameter count),
/// with the subgradient lambda * sign(theta - theta0) / P (0 where theta = theta0).
class L1ToInit {
 public:
  /// \brief theta0 = the model's current (trainable) weights.
  L1ToInit(const model::Transformer& model, double lambda);
  /// \brief Adds the penalty's subgradient to the model's gradients and returns the penalty.
  double add_gradient(model::Transformer& model);

 private:
  double lambda_;
  kernels::Backend* backend_;
  kernels::Buffer theta0_, diff_, sign_;
};

}  // namespace flowlm::train
