// The argument checks of every Backend op, shared by all backends so that each one rejects the same
// calls with the same message: one function per op, named after it, that checks the views' presence,
// device, dtype and shapes (and the scalar parameters) through an ArgCheck and returns the sizes the
// kernels need. A failed check throws flowlm::Error "<backend>: <op function>: <what>".
// Checks that read tensor contents (token ids in range) are the backends' own: they need the data.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/backend.hpp"
#include "kernels/check.hpp"

namespace flowlm::kernels::args {

/// \brief Sizes of an embedding call: tokens [B, T], table [V, C].
struct EmbeddingDims {
  index_t B, T, V, C;
};
/// \brief N rows of C (norms: channels; glu: F outputs; logits: V classes).
struct RowDims {
  index_t N, C;
};
/// \brief inp [N, C] @ W -> [N, OC].
struct MatmulDims {
  index_t N, C, OC;
};
/// \brief B sequences of T positions (qkv, per-sample losses).
struct SeqDims {
  index_t B, T;
};

// ---- memory (the name of the calling function is given, e.g. "copy_in")
/// \brief alloc: no negative dimension.
void alloc(const Backend& be, const Shape& shape);
/// \brief copy_in / copy_out / zero: a present view on the backend's device of exactly `bytes` bytes.
void copy(const Backend& be, const char* fn, const TensorView& v, std::size_t bytes);

// ---- ops, in Backend's order and with its argument order
EmbeddingDims embedding_forward(const ArgCheck& a, const TensorView& out, const TensorView& tokens,
                                const TensorView& wte, const TensorView& wpe);
EmbeddingDims embedding_backward(const ArgCheck& a, const TensorView& dwte, const TensorView& dwpe,
                                 const TensorView& dout, const TensorView& tokens);
RowDims layernorm_forward(const ArgCheck& a, const TensorView& out, const TensorView& mean,
                          const TensorView& rstd, const TensorView& inp, const TensorView& weight,
                          const TensorView& bias, float eps);
RowDims layernorm_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& dweight,
                           const TensorView& dbias, const TensorView& dout, const TensorView& inp,
                           const TensorView& weight, const TensorView& mean, const TensorView& rstd);
RowDims rmsnorm_forward(const ArgCheck& a, const TensorView& out, const TensorView& rstd,
                        const TensorView& inp, const TensorView& weight, const RmsnormParams& p);
RowDims rmsnorm_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& dweight,
                         const TensorView& dout, const TensorView& inp, const TensorView& weight,
                         const TensorView& rstd);
MatmulDims matmul_forward(const ArgCheck& a, const TensorView& out, const TensorView& inp,
                          const TensorView& weight, const TensorView& bias, WeightLayout layout);
MatmulDims matmul_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& dweight,
                           const TensorView& dbias, const TensorView& dout, const TensorView& inp,
                           const TensorView& weight, WeightLayout layout);
/// \brief rope_forward / rope_backward on the tensor called `name` ("qkv" or "dqkv").
SeqDims rope(const ArgCheck& a, const char* name, const TensorView& qkv, const RopeParams& p);
/// \brief rope_forward_at: qkv as rope(), start [B] i32.
SeqDims rope_at(const ArgCheck& a, const TensorView& qkv, const TensorView& start, const RopeParams& p);
/// \brief B, T of qkv and S of the caches [B, KVH, S, hd].
struct CacheDims {
  index_t B, T, S;
};
CacheDims kv_cache_write(const ArgCheck& a, const TensorView& k_cache, const TensorView& v_cache,
                         const TensorView& qkv, const TensorView& start, const AttentionParams& p);
CacheDims attention_cached(const ArgCheck& a, const TensorView& out, const TensorView& qkv,
                           const TensorView& k_cache, const TensorView& v_cache, const TensorView& start,
                           const AttentionParams& p);
/// \brief The positions start[b] .. start[b] + T - 1 (start on the host) must lie in [0, S).
void check_positions(const ArgCheck& a, const std::int32_t* start, index_t B, index_t T, index_t S);
SeqDims attention_forward(const ArgCheck& a, const TensorView& out, const TensorView& att,
                          const TensorView& qkv, const AttentionParams& p);
SeqDims attention_backward(const ArgCheck& a, const TensorView& dqkv, const TensorView& datt,
                           const TensorView& dout, const TensorView& qkv, const TensorView& att,
                           const AttentionParams& p);
index_t gelu_forward(const ArgCheck& a, const TensorView& out, const TensorView& inp);
index_t gelu_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& inp,
                      const TensorView& dout);
/// \brief Returns (N, F) for inp [N, 2F].
RowDims glu_forward(const ArgCheck& a, const TensorView& out, const TensorView& inp);
RowDims glu_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& inp,
                     const TensorView& dout);
index_t residual_forward(const ArgCheck& a, const TensorView& out, const TensorView& a_in,
                         const TensorView& b_in);
index_t residual_backward(const ArgCheck& a, const TensorView& da, const TensorView& db,
                          const TensorView& dout);
index_t softcap_forward(const ArgCheck& a, const TensorView& out, const TensorView& inp, float cap);
index_t softcap_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& out,
                         const TensorView& dout, float cap);
/// \brief Returns (N, V) for logits [N, V].
RowDims crossentropy_forward(const ArgCheck& a, const TensorView& losses, const TensorView& logits,
                             const TensorView& targets, const TensorView& mask);
RowDims crossentropy_backward(const ArgCheck& a, const TensorView& dlogits, const TensorView& logits,
                              const TensorView& targets, const TensorView& dlosses);
SeqDims per_sample_loss(const ArgCheck& a, const TensorView& sample_loss, const TensorView& tokens,
                        const TensorView& losses, const TensorView& mask);
index_t adamw_update(const ArgCheck& a, const TensorView& param, const TensorView& m, const TensorView& v,
                     const TensorView& grad, const AdamwParams& p);
index_t sum_squares(const ArgCheck& a, const TensorView& x);
index_t dot(const ArgCheck& a, const TensorView& x, const TensorView& y);
index_t scale(const ArgCheck& a, const TensorView& x);
index_t all_finite(const ArgCheck& a, const TensorView& x);
index_t axpby(const ArgCheck& a, const TensorView& y, const TensorView& x);
index_t sign(const ArgCheck& a, const TensorView& out, const TensorView& x);

// ---- bad ids in the data (flowlm::DataError), found by the backend where its data lives
/// \brief Element `i` of tokens [B, T] holds `id`, outside [0, V).
[[noreturn]] void fail_token_id(const ArgCheck& a, const TensorView& tokens, index_t i, std::int32_t id,
                                index_t V);
/// \brief The counted target of row `row` is `id`, outside [0, V).
[[noreturn]] void fail_target(const ArgCheck& a, index_t row, std::int32_t id, index_t V);

}  // namespace flowlm::kernels::args
