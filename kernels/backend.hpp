// The kernel backend interface: one abstract Backend (memory, copies, one virtual per op family)
// with implementations chosen by name at run time (make_backend), plus the start-up and
// description of the host backend (Kokkos). Only kernels/ includes Kokkos headers.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "kernels/ops.hpp"
#include "kernels/tensor.hpp"

namespace flowlm::kernels {

/// \brief RAII: initializes Kokkos (and matches OpenBLAS's thread count to it) for the
/// lifetime of the object; one per process, created after MPI.
class BackendScope {
 public:
  BackendScope(int& argc, char** argv);
  ~BackendScope();
  BackendScope(const BackendScope&) = delete;
  BackendScope& operator=(const BackendScope&) = delete;
};

/// \brief e.g. "Kokkos 3.4.1, OpenMP (2 threads)"; usable before initialization too.
std::string backend_description();

/// \brief Threads the host backend runs on (1 for Serial).
int backend_concurrency();

/// \brief One set of kernels behind one memory space. Calls are per layer, so the virtual
/// dispatch costs nothing measurable.
///
/// Conventions (as in kernels.hpp): arguments in llm.c order, outputs first; forward ops
/// overwrite their outputs; backward ops ACCUMULATE into the gradients they write (callers zero
/// them once per step) unless documented otherwise. An absent view (data == nullptr) is allowed
/// only where an argument says "optional". Every view must be on device() and, for float tensors,
/// of a dtype supports() accepts (token ids and targets are i32). Backends check shapes and dtypes
/// and throw flowlm::Error naming the backend, the op, the argument and its shape.
/// Shapes: B batch, T time, C channels, N rows (any leading dims flattened), V vocabulary,
/// NH / KVH query / key-value heads of hd channels.
class Backend : public Deallocator {
 public:
  virtual ~Backend() = default;

  /// \brief The name make_backend() takes: "host", "reference", "cuda".
  virtual std::string name() const = 0;
  /// \brief Where this backend's buffers live.
  virtual Device device() const = 0;
  /// \brief True when `op` runs on this backend with float tensors of `dtype`.
  virtual bool supports(Op op, DType dtype) const = 0;

  // ---- memory -----------------------------------------------------------------------------
  /// \brief A zero-filled contiguous buffer of `shape` on device(); freed when the Buffer dies.
  virtual Buffer alloc(DType dtype, const Shape& shape) = 0;
  /// \brief Copies dst.bytes() bytes from host memory into dst; `bytes` must equal dst.bytes().
  virtual void copy_in(const TensorView& dst, const void* src, std::size_t bytes) = 0;
  /// \brief Copies src into host memory of `bytes` == src.bytes() bytes.
  virtual void copy_out(void* dst, std::size_t bytes, const TensorView& src) = 0;
  /// \brief Sets every element of x to zero (for gradients, which backward ops accumulate into).
  virtual void zero(const TensorView& x) = 0;
  /// \brief Waits until every op issued so far has finished (no-op on synchronous backends).
  virtual void synchronize() = 0;

  // ---- ops --------------------------------------------------------------------------------
  /// \brief out[B,T,C] = scale * wte[tokens[b,t]] + wpe[t] (wpe [>=T, C] optional; Gemma scales by
  /// sqrt(C)). tokens [B,T] i32 in [0, V), wte [V,C]; a token outside throws flowlm::DataError.
  virtual void embedding_forward(const TensorView& out, const TensorView& tokens, const TensorView& wte,
                                 const TensorView& wpe, float scale) = 0;
  /// \brief dwte[tokens[b,t]] += scale * dout[b,t]; dwpe[t] += dout[b,t] (dwpe optional).
  virtual void embedding_backward(const TensorView& dwte, const TensorView& dwpe, const TensorView& dout,
                                  const TensorView& tokens, float scale) = 0;

  /// \brief out[N,C] = (inp - mean) * rstd * weight + bias, rstd = 1 / sqrt(var + eps); saves
  /// mean[N] and rstd[N].
  virtual void layernorm_forward(const TensorView& out, const TensorView& mean, const TensorView& rstd,
                                 const TensorView& inp, const TensorView& weight, const TensorView& bias,
                                 float eps) = 0;
  virtual void layernorm_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dbias,
                                  const TensorView& dout, const TensorView& inp, const TensorView& weight,
                                  const TensorView& mean, const TensorView& rstd) = 0;

  /// \brief out[N,C] = inp * rstd * weight (or * (1 + weight)), rstd = 1 / sqrt(mean(inp^2) + eps);
  /// saves rstd[N].
  virtual void rmsnorm_forward(const TensorView& out, const TensorView& rstd, const TensorView& inp,
                               const TensorView& weight, const RmsnormParams& p) = 0;
  virtual void rmsnorm_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dout,
                                const TensorView& inp, const TensorView& weight, const TensorView& rstd,
                                const RmsnormParams& p) = 0;

  /// \brief out[N,OC] = inp[N,C] @ W + bias[OC] (bias optional); weight is [C,OC] (conv1d) or
  /// [OC,C] (linear, W = weight^T).
  virtual void matmul_forward(const TensorView& out, const TensorView& inp, const TensorView& weight,
                              const TensorView& bias, WeightLayout layout) = 0;
  /// \brief dinp += dout @ W^T, dweight += (inp^T @ dout in the weight's layout), dbias += sum_n dout;
  /// dinp, dweight and dbias are each optional.
  virtual void matmul_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dbias,
                               const TensorView& dout, const TensorView& inp, const TensorView& weight,
                               WeightLayout layout) = 0;

  /// \brief IN PLACE rotary embedding of the q and k heads of qkv [B,T,(NH+2*KVH)*hd] (q heads,
  /// then k heads, then v heads; Hugging Face rotate-half convention, positions 0..T-1).
  virtual void rope_forward(const TensorView& qkv, const RopeParams& p) = 0;
  /// \brief IN PLACE: rotates the q/k part of the gradient dqkv back (the transpose rotation).
  virtual void rope_backward(const TensorView& dqkv, const RopeParams& p) = 0;

  /// \brief IN PLACE rope_forward where token t of row b is at position start[b] + t (start [B] i32,
  /// >= 0): prompts and decoding steps that continue a cached sequence.
  virtual void rope_forward_at(const TensorView& qkv, const TensorView& start, const RopeParams& p) = 0;

  /// \brief Causal attention: out [B,T,NH*hd] from qkv [B,T,(NH+2*KVH)*hd]; att [B,NH,T,T]
  /// receives the probabilities (saved for backward). GQA, scale, soft-cap, sliding window: p.
  virtual void attention_forward(const TensorView& out, const TensorView& att, const TensorView& qkv,
                                 const AttentionParams& p) = 0;
  /// \brief dqkv += d(out)/d(qkv) . dout; datt [B,NH,T,T] is scratch (overwritten).
  virtual void attention_backward(const TensorView& dqkv, const TensorView& datt, const TensorView& dout,
                                  const TensorView& qkv, const TensorView& att, const AttentionParams& p) = 0;

  /// \brief Inference with a key/value cache k_cache, v_cache [B, KVH, S, hd]: writes the k and v heads
  /// of qkv [B,T,(NH+2*KVH)*hd] at positions start[b] + t (start [B] i32 with 0 <= start[b] and
  /// start[b] + T <= S, else flowlm::DataError). Only n_head, n_kv_head and head_dim of p are read.
  virtual void kv_cache_write(const TensorView& k_cache, const TensorView& v_cache, const TensorView& qkv,
                              const TensorView& start, const AttentionParams& p) = 0;
  /// \brief out [B,T,NH*hd]: the query of token t of row b, at position i = start[b] + t, attends to the
  /// cached keys j <= i (GQA, scale, soft-cap and sliding window as attention_forward); the cache must
  /// hold positions 0..i (kv_cache_write first). Forward only.
  virtual void attention_cached(const TensorView& out, const TensorView& qkv, const TensorView& k_cache,
                                const TensorView& v_cache, const TensorView& start,
                                const AttentionParams& p) = 0;

  /// \brief out = gelu_tanh(inp), element-wise.
  virtual void gelu_forward(const TensorView& out, const TensorView& inp) = 0;
  virtual void gelu_backward(const TensorView& dinp, const TensorView& inp, const TensorView& dout) = 0;

  /// \brief out[N,F] = act(inp[:, :F]) * inp[:, F:] from the packed gate/up inp [N,2F]; act = silu
  /// (swiglu) or tanh-GELU (geglu). Backward writes d(gate) and d(up) into dinp [N,2F].
  virtual void glu_forward(const TensorView& out, const TensorView& inp, GluKind kind) = 0;
  virtual void glu_backward(const TensorView& dinp, const TensorView& inp, const TensorView& dout,
                            GluKind kind) = 0;

  /// \brief out = a + b (out may alias a or b). Backward: da += dout, db += dout.
  virtual void residual_forward(const TensorView& out, const TensorView& a, const TensorView& b) = 0;
  virtual void residual_backward(const TensorView& da, const TensorView& db, const TensorView& dout) = 0;

  /// \brief out = cap * tanh(inp / cap) (out may alias inp; Gemma-2's final logits).
  virtual void softcap_forward(const TensorView& out, const TensorView& inp, float cap) = 0;
  /// \brief dinp += dout * (1 - (out / cap)^2), from the forward's OUTPUT.
  virtual void softcap_backward(const TensorView& dinp, const TensorView& out, const TensorView& dout,
                                float cap) = 0;

  /// \brief losses[N] = -log softmax(logits[N,V])[targets] where mask != 0, else 0 (mask [N]
  /// optional; targets [N] i32, a counted target outside [0, V) throws flowlm::DataError).
  virtual void crossentropy_forward(const TensorView& losses, const TensorView& logits,
                                    const TensorView& targets, const TensorView& mask) = 0;
  /// \brief OVERWRITES dlogits = dlosses[n] * (softmax(logits) - onehot(target)); rows with
  /// dlosses == 0 become zero, so per-token and per-sample weights enter through dlosses.
  /// dlogits may alias logits.
  virtual void crossentropy_backward(const TensorView& dlogits, const TensorView& logits,
                                     const TensorView& targets, const TensorView& dlosses) = 0;
  /// \brief tokens[B] = sum_t mask; sample_loss[B] = sum_t losses * mask / tokens (0 when no token);
  /// losses and mask [B,T], mask optional (all ones).
  virtual void per_sample_loss(const TensorView& sample_loss, const TensorView& tokens,
                               const TensorView& losses, const TensorView& mask) = 0;

  /// \brief One AdamW step on param, m, v (same shape as grad); see kernels.hpp for the math.
  virtual void adamw_update(const TensorView& param, const TensorView& m, const TensorView& v,
                            const TensorView& grad, const AdamwParams& p) = 0;
  /// \brief sum_i x[i]^2, accumulated in double (gradient norms).
  virtual double sum_squares(const TensorView& x) = 0;
  /// \brief sum_i x[i] * y[i], accumulated in double (weighted losses); x and y of one shape.
  virtual double dot(const TensorView& x, const TensorView& y) = 0;
  /// \brief x *= s.
  virtual void scale(const TensorView& x, float s) = 0;
  /// \brief True when no element of x is NaN or Inf.
  virtual bool all_finite(const TensorView& x) = 0;
  /// \brief y = a * x + b * y (EMA, L2-to-init, weighted losses); with b == 0, y is not read.
  virtual void axpby(const TensorView& y, const TensorView& x, float a, float b) = 0;
  /// \brief out = sign(x): 1, -1, or 0 for zero (L1 penalties); out may alias x.
  virtual void sign(const TensorView& out, const TensorView& x) = 0;
};

/// \brief The backend called `name`: "host" (Kokkos + OpenBLAS; needs a live BackendScope),
/// "reference" (plain loops) or "cuda". A backend not compiled into this build, or an unknown
/// name, is a flowlm::ConfigError naming run.backend, the value and the compiled choices.
std::unique_ptr<Backend> make_backend(const std::string& name);

/// \brief The names make_backend() accepts in this build.
std::vector<std::string> compiled_backends();

}  // namespace flowlm::kernels
