// The op families of the kernel API and their parameter structs, shared by the free-function
// kernels (kernels.hpp) and the Backend interface (backend.hpp).
#pragma once

#include <array>

#include "core/types.hpp"

namespace flowlm::kernels {

/// \brief Every op family a Backend implements (forward and, where it has one, backward).
enum class Op {
  embedding,
  layernorm,
  rmsnorm,
  matmul,
  rope,
  attention,
  gelu,
  glu,  // swiglu and geglu
  residual,
  softcap,
  crossentropy,
  per_sample_loss,
  adamw,
  sum_squares,
  dot,
  scale,
  all_finite,
  axpby,
  sign,
  kv_cache,  // kv_cache_write and attention_cached (inference)
};

/// \brief All of Op, in declaration order.
inline constexpr std::array<Op, 20> kAllOps{
    Op::embedding, Op::layernorm,   Op::rmsnorm,  Op::matmul,  Op::rope,         Op::attention,
    Op::gelu,      Op::glu,         Op::residual, Op::softcap, Op::crossentropy, Op::per_sample_loss,
    Op::adamw,     Op::sum_squares, Op::dot,      Op::scale,   Op::all_finite,   Op::axpby,
    Op::sign,      Op::kv_cache};

/// \brief "matmul", "attention", ...
const char* op_name(Op op);

/// \brief How a dense layer's weight is stored: Hugging Face Conv1D [C, OC] (GPT-2) or
/// nn.Linear [OC, C] (Llama, Gemma, and the tied LM head, which is wte [V, C]).
enum class WeightLayout { conv1d, linear };

/// \brief Gated MLP activations on a packed [N, 2F] gate/up buffer: out = act(gate) * up with
/// act = silu (swiglu: Llama) or tanh-GELU (geglu: Gemma).
enum class GluKind { swiglu, geglu };

/// \brief RMSNorm: rstd = 1 / sqrt(mean(x^2) + eps); out = x * rstd * w, or x * rstd * (1 + w)
/// when plus_one (Gemma stores the weight as an offset from 1).
struct RmsnormParams {
  float eps = 1e-6f;
  bool plus_one = false;
};

/// \brief Rotary embedding of the q and k heads of a packed qkv buffer (see Backend::rope_forward).
struct RopeParams {
  index_t n_head = 0;
  index_t n_kv_head = 0;
  index_t head_dim = 0;
  float theta = 10000.0f;
};

/// \brief Causal self-attention on a packed qkv buffer (see Backend::attention_forward).
struct AttentionParams {
  index_t n_head = 0;
  index_t n_kv_head = 0;  // GQA: q head h reads kv head h / (n_head / n_kv_head)
  index_t head_dim = 0;
  float scale = 0.0f;    // score scale; 0 means 1 / sqrt(head_dim)
  float softcap = 0.0f;  // s = softcap * tanh(s / softcap) before the mask; 0 means none
  index_t window = 0;    // sliding window: i attends to j with i - window < j <= i; 0 means none
};

/// \brief AdamW hyperparameters for one step (step counts from 1).
struct AdamwParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
  float grad_scale = 1.0f;  // g = grad * grad_scale (gradient clipping, loss scaling)
  long step = 1;
};

}  // namespace flowlm::kernels
