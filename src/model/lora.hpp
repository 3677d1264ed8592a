// LoRA adapters (finetune.lora) over the Transformer's projections: delta W = (alpha / r) B A
// with A [r, in] and B [out, r] as PEFT stores them. The adapter is folded into a copy of the
// weight before each use (W' = W + s B A, a rank-r GEMM), so the forward and backward kernels are
// the model's own; the weight gradient of W' gives dA and dB with two more rank-r GEMMs. The
// base weights stay frozen and get no gradient buffer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/types.hpp"
#include "kernels/backend.hpp"
#include "model/tensors.hpp"

namespace flowlm::model {

/// \brief One adapter: rows [row_offset, row_offset + rows) of its fused group's stored matrix
/// get scale * X @ Y, with X [rows, r] and Y [r, cols] in the adapter buffer. Linear weights
/// ([out, in]): X = B, Y = A. Conv1D weights (GPT-2, stored [in, out]): X = A^T, Y = B^T.
struct LoraAdapter {
  index_t base = -1;       ///< the adapted tensor's index in the model's table
  index_t group = -1;      ///< first tensor of the group the kernels read as one matrix
  index_t row_offset = 0;  ///< rows of the group before the adapted tensor
  index_t rows = 0;        ///< the adapted tensor as stored: rows x cols
  index_t cols = 0;
  index_t lora_a = -1;      ///< index of lora_A in Lora::table()
  index_t lora_b = -1;      ///< index of lora_B in Lora::table()
  bool transposed = false;  ///< conv1d storage (X = A^T, Y = B^T)
};

/// \brief The "base_model.model.<module>.lora_A.weight" name PEFT saves for a weight named
/// "<module>.weight".
std::string peft_adapter_name(const std::string& weight_name, char which);

/// \brief The module names LoRA can target in a model with this table (the last component of
/// every block projection's name: c_attn, c_proj, c_fc; q_proj, ..., down_proj), in table order.
std::vector<std::string> lora_target_names(const std::vector<ParamSpec>& table);

/// \brief The adapters of one model and their parameters, gradients and scratch on a backend.
class Lora {
 public:
  /// \brief Adapters for every block projection whose module name ends in one of spec.targets
  /// (all of them when empty). ConfigError naming finetune.lora.<key> for r < 1, a dropout other
  /// than 0, or a target that matches no projection of the family. Parameters start at zero:
  /// call init_random or load them.
  Lora(const std::vector<ParamSpec>& base_table, const config::LoraConfig& spec, kernels::Backend& backend);

  /// \brief The spec with alpha and targets resolved (alpha = r when 0, the targets used).
  const config::LoraConfig& spec() const { return spec_; }
  float scale() const { return scale_; }
  /// \brief lora_A [r, in] and lora_B [out, r] of every adapter, PEFT names, flat buffer order.
  const std::vector<ParamSpec>& table() const { return table_; }
  const std::vector<LoraAdapter>& adapters() const { return adapters_; }
  index_t num_params() const { return num_params_; }
  /// \brief Bytes of the scratch buffers (merged weight, its gradient, one delta) at their largest.
  std::size_t scratch_bytes() const;

  kernels::TensorView params_view() const { return params_.view(); }
  kernels::TensorView grads_view();
  void zero_grad();

  /// \brief PEFT's init: A uniform in +-1/sqrt(in) (kaiming-uniform, a = sqrt(5)), B = 0, so the
  /// adapted model starts equal to its base. Portable: one stream per tensor from (seed, name).
  void init_random(std::uint64_t seed);
  /// \brief Tensor i of table() in PEFT's layout, through host memory.
  std::vector<float> read(std::size_t i) const;
  void write(std::size_t i, const float* src);
  /// \brief Every tensor at once, in table() order and PEFT's layout.
  void write_all(const std::vector<std::vector<float>>& peft);
  /// \brief The whole buffer on the host, in the internal layout.
  std::vector<float> host_params() const;
  /// \brief Tensor i of a flat buffer in this layout (parameters, moments, EMA) in PEFT's
  /// layout, and back.
  std::vector<float> to_peft(std::size_t i, const float* flat) const;
  void from_peft(std::size_t i, const float* peft, float* flat) const;

  /// \brief Whether any adapter changes the group starting at table index `group`.
  bool adapts(index_t group) const;
  /// \brief W' = base + scale * X Y for every adapter of the group, in a scratch buffer shaped
  /// like `base` (valid until the next call).
  kernels::TensorView merged(index_t group, const kernels::TensorView& base);
  /// \brief A zeroed scratch buffer for the group's weight gradient, shaped like `base`.
  kernels::TensorView group_grad(const kernels::TensorView& base);
  /// \brief Accumulates the adapters' gradients from `dweight`, the gradient of the merged weight
  /// the group's matmul backward wrote into group_grad() (scaled in place by scale()).
  void backward(index_t group, const kernels::TensorView& dweight);

 private:
  kernels::TensorView x_view(const LoraAdapter& a, const kernels::TensorView& buf) const;
  kernels::TensorView y_view(const LoraAdapter& a, const kernels::TensorView& buf) const;
  kernels::TensorView scratch(kernels::Buffer& buf, const Shape& shape);

  config::LoraConfig spec_;
  float scale_ = 1.0f;
  kernels::Backend* backend_;
  std::vector<ParamSpec> table_;
  std::vector<LoraAdapter> adapters_;
  std::vector<index_t> owner_;  ///< adapter of each table_ entry
  index_t num_params_ = 0;
  index_t max_group_ = 0, max_adapter_ = 0;  ///< largest adapted group / tensor (elements)
  kernels::Buffer params_, grads_, merged_, dweight_, delta_;
};

}  // namespace flowlm::model
