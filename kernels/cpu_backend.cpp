// The two host-memory backends, "host" (Kokkos + OpenBLAS, kernels/host/) and "reference" (plain
// loops, kernels/reference/): one adapter that checks the views and calls a table of the free
// kernels, so both backends run exactly the same checks and differ only in their kernels.
#include "kernels/cpu_backend.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <tuple>
#include <utility>

#include "kernels/check.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

namespace {

// One backend's free functions (kernels.hpp). The attention entry points are overloaded by the
// GPT-2 wrappers, hence the explicit types.
struct CpuKernels {
  using AttnFwd = void (*)(float*, float*, const float*, index_t, index_t, const AttentionParams&);
  using AttnBwd = void (*)(float*, float*, const float*, const float*, const float*, index_t, index_t,
                           const AttentionParams&);
  decltype(&ref::embedding_forward) embedding_forward;
  decltype(&ref::embedding_backward) embedding_backward;
  decltype(&ref::layernorm_forward) layernorm_forward;
  decltype(&ref::layernorm_backward) layernorm_backward;
  decltype(&ref::rmsnorm_forward) rmsnorm_forward;
  decltype(&ref::rmsnorm_backward) rmsnorm_backward;
  decltype(&ref::matmul_forward) matmul_forward;
  decltype(&ref::matmul_backward) matmul_backward;
  decltype(&ref::linear_forward) linear_forward;
  decltype(&ref::linear_backward) linear_backward;
  decltype(&ref::rope_forward) rope_forward;
  decltype(&ref::rope_backward) rope_backward;
  AttnFwd attention_forward;
  AttnBwd attention_backward;
  decltype(&ref::gelu_forward) gelu_forward;
  decltype(&ref::gelu_backward) gelu_backward;
  decltype(&ref::glu_forward) glu_forward;
  decltype(&ref::glu_backward) glu_backward;
  decltype(&ref::residual_forward) residual_forward;
  decltype(&ref::residual_backward) residual_backward;
  decltype(&ref::softcap_forward) softcap_forward;
  decltype(&ref::softcap_backward) softcap_backward;
  decltype(&ref::crossentropy_forward) crossentropy_forward;
  decltype(&ref::crossentropy_backward) crossentropy_backward;
  decltype(&ref::per_sample_loss) per_sample_loss;
  decltype(&ref::adamw_update) adamw_update;
  decltype(&ref::sum_squares) sum_squares;
  decltype(&ref::dot) dot;
  decltype(&ref::scale) scale;
  decltype(&ref::all_finite) all_finite;
  decltype(&ref::axpby) axpby;
};

#define FLOWLM_CPU_KERNELS(ns)                                                                              \
  CpuKernels {                                                                                              \
    &ns::embedding_forward, &ns::embedding_backward, &ns::layernorm_forward, &ns::layernorm_backward,       \
        &ns::rmsnorm_forward, &ns::rmsnorm_backward, &ns::matmul_forward, &ns::matmul_backward,             \
        &ns::linear_forward, &ns::linear_backward, &ns::rope_forward, &ns::rope_backward,                   \
        static_cast<CpuKernels::AttnFwd>(&ns::attention_forward),                                           \
        static_cast<CpuKernels::AttnBwd>(&ns::attention_backward), &ns::gelu_forward, &ns::gelu_backward,   \
        &ns::glu_forward, &ns::glu_backward, &ns::residual_forward, &ns::residual_backward,                 \
        &ns::softcap_forward, &ns::softcap_backward, &ns::crossentropy_forward, &ns::crossentropy_backward, \
        &ns::per_sample_loss, &ns::adamw_update, &ns::sum_squares, &ns::dot, &ns::scale, &ns::all_finite,   \
        &ns::axpby                                                                                          \
  }

constexpr std::size_t kAlign = 64;  // a cache line: what the vectorised kernels like to start on

float* opt(const TensorView& v) { return v.present() ? v.f32() : nullptr; }

void check_heads(const ArgCheck& a, index_t n_head, index_t n_kv_head, index_t head_dim) {
  a.require(n_head > 0 && n_kv_head > 0 && head_dim > 0,
            "n_head = {}, n_kv_head = {}, head_dim = {}: all must be positive", n_head, n_kv_head, head_dim);
  a.require(n_head % n_kv_head == 0, "n_head = {} is not a multiple of n_kv_head = {}", n_head, n_kv_head);
}

// qkv [B, T, (NH + 2 KVH) hd] -> (B, T).
std::pair<index_t, index_t> check_qkv(const ArgCheck& a, const char* name, const TensorView& qkv, index_t NH,
                                      index_t KVH, index_t hd) {
  a.rank(name, qkv, 3);
  a.require(qkv.shape[2] == (NH + 2 * KVH) * hd,
            "{} has shape {}, expected [B, T, {}] = [B, T, (n_head + 2 n_kv_head) head_dim] for n_head {}, "
            "n_kv_head {}, head_dim {}",
            name, shape_str(qkv.shape), (NH + 2 * KVH) * hd, NH, KVH, hd);
  return {qkv.shape[0], qkv.shape[1]};
}

// Token ids index rows of a table: a bad id would read out of bounds, and comes from the data.
void check_ids(const ArgCheck& a, const TensorView& tokens, index_t V) {
  const std::int32_t* ids = tokens.i32();
  const index_t T = tokens.shape.back();
  for (index_t i = 0; i < tokens.numel(); ++i) {
    if (ids[i] < 0 || ids[i] >= V) {
      a.fail_as<DataError>(
          "token id {} at (b {}, t {}) is outside [0, {}); the data's vocabulary does not match the model's "
          "vocab_size",
          ids[i], i / T, i % T, V);
    }
  }
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(std::string name, const CpuKernels& k, bool kokkos)
      : name_(std::move(name)), k_(k), kokkos_(kokkos) {
    if (kokkos_ && !Kokkos::is_initialized())
      fail<Error>("the {} backend needs Kokkos: create a kernels::BackendScope before make_backend(\"{}\")",
                  name_, name_);
  }

  std::string name() const override { return name_; }
  Device device() const override { return Device::host; }
  bool supports(Op, DType dtype) const override { return dtype == DType::f32; }

  Buffer alloc(DType dtype, const Shape& shape) override {
    for (const index_t d : shape) {
      if (d < 0) fail<Error>("{}: alloc: negative dimension in shape {}", name_, shape_str(shape));
    }
    TensorView v{nullptr, dtype, shape, Device::host};
    // Rounded up to the alignment (aligned_alloc's rule) and never 0, so a buffer is never "absent".
    const std::size_t bytes = (std::max<std::size_t>(v.bytes(), 1) + kAlign - 1) / kAlign * kAlign;
    v.data = std::aligned_alloc(kAlign, bytes);
    if (!v.data)
      fail<Error>("{}: alloc: out of memory for {} {} ({} bytes)", name_, dtype_name(dtype), shape_str(shape),
                  bytes);
    std::memset(v.data, 0, bytes);
    return Buffer(std::move(v), this);
  }
  void deallocate(void* data, std::size_t) noexcept override { std::free(data); }

  void copy_in(const TensorView& dst, const void* src, std::size_t bytes) override {
    check_copy("copy_in", dst, bytes);
    std::memcpy(dst.data, src, bytes);
  }
  void copy_out(void* dst, std::size_t bytes, const TensorView& src) override {
    check_copy("copy_out", src, bytes);
    std::memcpy(dst, src.data, bytes);
  }
  void zero(const TensorView& x) override {
    check_copy("zero", x, x.bytes());
    std::memset(x.data, 0, x.bytes());
  }
  void synchronize() override {
    if (kokkos_) Kokkos::fence();
  }

  // ---- embedding
  void embedding_forward(const TensorView& out, const TensorView& tokens, const TensorView& wte,
                         const TensorView& wpe, float scale) override {
    const ArgCheck a(*this, Op::embedding, "embedding_forward");
    const auto [B, T, V, C] = check_embedding(a, "out", out, tokens, "wte", wte, "wpe", wpe);
    check_ids(a, tokens, V);
    k_.embedding_forward(out.f32(), tokens.i32(), wte.f32(), opt(wpe), B, T, C, scale);
  }
  void embedding_backward(const TensorView& dwte, const TensorView& dwpe, const TensorView& dout,
                          const TensorView& tokens, float scale) override {
    const ArgCheck a(*this, Op::embedding, "embedding_backward");
    const auto [B, T, V, C] = check_embedding(a, "dout", dout, tokens, "dwte", dwte, "dwpe", dwpe);
    check_ids(a, tokens, V);
    k_.embedding_backward(dwte.f32(), opt(dwpe), dout.f32(), tokens.i32(), B, T, C, scale);
  }

  // ---- layernorm
  void layernorm_forward(const TensorView& out, const TensorView& mean, const TensorView& rstd,
                         const TensorView& inp, const TensorView& weight, const TensorView& bias,
                         float eps) override {
    const ArgCheck a(*this, Op::layernorm, "layernorm_forward");
    const auto [N, C] = check_norm(a, inp, weight, {{"out", &out}});
    a.floats("mean", mean);
    a.floats("rstd", rstd);
    a.floats("bias", bias);
    a.numel("mean", mean, N);
    a.numel("rstd", rstd, N);
    a.shape("bias", bias, {C});
    a.require(eps >= 0.0f, "eps = {} must be >= 0", eps);
    k_.layernorm_forward(out.f32(), mean.f32(), rstd.f32(), inp.f32(), weight.f32(), bias.f32(), N, C, eps);
  }
  void layernorm_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dbias,
                          const TensorView& dout, const TensorView& inp, const TensorView& weight,
                          const TensorView& mean, const TensorView& rstd) override {
    const ArgCheck a(*this, Op::layernorm, "layernorm_backward");
    const auto [N, C] = check_norm(a, inp, weight, {{"dinp", &dinp}, {"dout", &dout}});
    for (const auto& [name, v] : {std::pair{"dweight", &dweight}, std::pair{"dbias", &dbias}}) {
      a.floats(name, *v);
      a.shape(name, *v, {C});
    }
    a.floats("mean", mean);
    a.floats("rstd", rstd);
    a.numel("mean", mean, N);
    a.numel("rstd", rstd, N);
    k_.layernorm_backward(dinp.f32(), dweight.f32(), dbias.f32(), dout.f32(), inp.f32(), weight.f32(),
                          mean.f32(), rstd.f32(), N, C);
  }

  // ---- rmsnorm
  void rmsnorm_forward(const TensorView& out, const TensorView& rstd, const TensorView& inp,
                       const TensorView& weight, const RmsnormParams& p) override {
    const ArgCheck a(*this, Op::rmsnorm, "rmsnorm_forward");
    const auto [N, C] = check_norm(a, inp, weight, {{"out", &out}});
    a.floats("rstd", rstd);
    a.numel("rstd", rstd, N);
    a.require(p.eps >= 0.0f, "eps = {} must be >= 0", p.eps);
    k_.rmsnorm_forward(out.f32(), rstd.f32(), inp.f32(), weight.f32(), N, C, p.eps, p.plus_one);
  }
  void rmsnorm_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dout,
                        const TensorView& inp, const TensorView& weight, const TensorView& rstd,
                        const RmsnormParams& p) override {
    const ArgCheck a(*this, Op::rmsnorm, "rmsnorm_backward");
    const auto [N, C] = check_norm(a, inp, weight, {{"dinp", &dinp}, {"dout", &dout}});
    a.floats("dweight", dweight);
    a.shape("dweight", dweight, {C});
    a.floats("rstd", rstd);
    a.numel("rstd", rstd, N);
    k_.rmsnorm_backward(dinp.f32(), dweight.f32(), dout.f32(), inp.f32(), weight.f32(), rstd.f32(), N, C,
                        p.plus_one);
  }

  // ---- matmul
  void matmul_forward(const TensorView& out, const TensorView& inp, const TensorView& weight,
                      const TensorView& bias, WeightLayout layout) override {
    const ArgCheck a(*this, Op::matmul, "matmul_forward");
    const auto [N, C, OC] = check_matmul(a, inp, weight, layout);
    a.floats("out", out);
    a.rows("out", out, N, OC);
    const bool has_bias = a.optional_floats("bias", bias);
    if (has_bias) a.shape("bias", bias, {OC});
    auto fn = layout == WeightLayout::conv1d ? k_.matmul_forward : k_.linear_forward;
    fn(out.f32(), inp.f32(), weight.f32(), opt(bias), N, C, OC);
  }
  void matmul_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dbias,
                       const TensorView& dout, const TensorView& inp, const TensorView& weight,
                       WeightLayout layout) override {
    const ArgCheck a(*this, Op::matmul, "matmul_backward");
    const auto [N, C, OC] = check_matmul(a, inp, weight, layout);
    a.floats("dout", dout);
    a.rows("dout", dout, N, OC);
    if (a.optional_floats("dinp", dinp)) a.shape("dinp", dinp, inp.shape);
    if (a.optional_floats("dweight", dweight)) a.shape("dweight", dweight, weight.shape);
    if (a.optional_floats("dbias", dbias)) a.shape("dbias", dbias, {OC});
    auto fn = layout == WeightLayout::conv1d ? k_.matmul_backward : k_.linear_backward;
    fn(opt(dinp), opt(dweight), opt(dbias), dout.f32(), inp.f32(), weight.f32(), N, C, OC);
  }

  // ---- rope
  void rope_forward(const TensorView& qkv, const RopeParams& p) override {
    const ArgCheck a(*this, Op::rope, "rope_forward");
    const auto [B, T] = check_rope(a, "qkv", qkv, p);
    k_.rope_forward(qkv.f32(), B, T, p);
  }
  void rope_backward(const TensorView& dqkv, const RopeParams& p) override {
    const ArgCheck a(*this, Op::rope, "rope_backward");
    const auto [B, T] = check_rope(a, "dqkv", dqkv, p);
    k_.rope_backward(dqkv.f32(), B, T, p);
  }

  // ---- attention
  void attention_forward(const TensorView& out, const TensorView& att, const TensorView& qkv,
                         const AttentionParams& p) override {
    const ArgCheck a(*this, Op::attention, "attention_forward");
    const auto [B, T] = check_attention(a, qkv, out, "out", att, p);
    k_.attention_forward(out.f32(), att.f32(), qkv.f32(), B, T, p);
  }
  void attention_backward(const TensorView& dqkv, const TensorView& datt, const TensorView& dout,
                          const TensorView& qkv, const TensorView& att, const AttentionParams& p) override {
    const ArgCheck a(*this, Op::attention, "attention_backward");
    const auto [B, T] = check_attention(a, qkv, dout, "dout", att, p);
    a.floats("dqkv", dqkv);
    a.shape("dqkv", dqkv, qkv.shape);
    a.floats("datt", datt);
    a.shape("datt", datt, att.shape);
    k_.attention_backward(dqkv.f32(), datt.f32(), dout.f32(), qkv.f32(), att.f32(), B, T, p);
  }

  // ---- gelu
  void gelu_forward(const TensorView& out, const TensorView& inp) override {
    const ArgCheck a(*this, Op::gelu, "gelu_forward");
    const index_t n = check_same(a, inp, {{"out", &out}});
    k_.gelu_forward(out.f32(), inp.f32(), n);
  }
  void gelu_backward(const TensorView& dinp, const TensorView& inp, const TensorView& dout) override {
    const ArgCheck a(*this, Op::gelu, "gelu_backward");
    const index_t n = check_same(a, inp, {{"dinp", &dinp}, {"dout", &dout}});
    k_.gelu_backward(dinp.f32(), inp.f32(), dout.f32(), n);
  }

  // ---- glu
  void glu_forward(const TensorView& out, const TensorView& inp, GluKind kind) override {
    const ArgCheck a(*this, Op::glu, "glu_forward");
    const auto [N, F] = check_glu(a, inp, out, "out");
    k_.glu_forward(out.f32(), inp.f32(), N, F, kind);
  }
  void glu_backward(const TensorView& dinp, const TensorView& inp, const TensorView& dout,
                    GluKind kind) override {
    const ArgCheck a(*this, Op::glu, "glu_backward");
    const auto [N, F] = check_glu(a, inp, dout, "dout");
    a.floats("dinp", dinp);
    a.shape("dinp", dinp, inp.shape);
    k_.glu_backward(dinp.f32(), inp.f32(), dout.f32(), N, F, kind);
  }

  // ---- residual
  void residual_forward(const TensorView& out, const TensorView& a_in, const TensorView& b_in) override {
    const ArgCheck a(*this, Op::residual, "residual_forward");
    const index_t n = check_same(a, a_in, {{"out", &out}, {"b", &b_in}}, "a");
    k_.residual_forward(out.f32(), a_in.f32(), b_in.f32(), n);
  }
  void residual_backward(const TensorView& da, const TensorView& db, const TensorView& dout) override {
    const ArgCheck a(*this, Op::residual, "residual_backward");
    const index_t n = check_same(a, dout, {{"da", &da}, {"db", &db}}, "dout");
    k_.residual_backward(da.f32(), db.f32(), dout.f32(), n);
  }

  // ---- softcap
  void softcap_forward(const TensorView& out, const TensorView& inp, float cap) override {
    const ArgCheck a(*this, Op::softcap, "softcap_forward");
    const index_t n = check_same(a, inp, {{"out", &out}});
    a.require(cap > 0.0f, "cap = {} must be > 0", cap);
    k_.softcap_forward(out.f32(), inp.f32(), n, cap);
  }
  void softcap_backward(const TensorView& dinp, const TensorView& out, const TensorView& dout,
                        float cap) override {
    const ArgCheck a(*this, Op::softcap, "softcap_backward");
    const index_t n = check_same(a, out, {{"dinp", &dinp}, {"dout", &dout}}, "out");
    a.require(cap > 0.0f, "cap = {} must be > 0", cap);
    k_.softcap_backward(dinp.f32(), out.f32(), dout.f32(), n, cap);
  }

  // ---- losses
  void crossentropy_forward(const TensorView& losses, const TensorView& logits, const TensorView& targets,
                            const TensorView& mask) override {
    const ArgCheck a(*this, Op::crossentropy, "crossentropy_forward");
    const auto [N, V] = check_logits(a, logits, targets);
    a.floats("losses", losses);
    a.numel("losses", losses, N);
    if (a.optional_floats("mask", mask)) a.numel("mask", mask, N);
    k_.crossentropy_forward(losses.f32(), logits.f32(), targets.i32(), opt(mask), N, V);
  }
  void crossentropy_backward(const TensorView& dlogits, const TensorView& logits, const TensorView& targets,
                             const TensorView& dlosses) override {
    const ArgCheck a(*this, Op::crossentropy, "crossentropy_backward");
    const auto [N, V] = check_logits(a, logits, targets);
    a.floats("dlogits", dlogits);
    a.shape("dlogits", dlogits, logits.shape);
    a.floats("dlosses", dlosses);
    a.numel("dlosses", dlosses, N);
    k_.crossentropy_backward(dlogits.f32(), logits.f32(), targets.i32(), dlosses.f32(), N, V);
  }
  void per_sample_loss(const TensorView& sample_loss, const TensorView& tokens, const TensorView& losses,
                       const TensorView& mask) override {
    const ArgCheck a(*this, Op::per_sample_loss, "per_sample_loss");
    a.floats("losses", losses);
    a.rank("losses", losses, 2);
    const index_t B = losses.shape[0], T = losses.shape[1];
    if (a.optional_floats("mask", mask)) a.shape("mask", mask, losses.shape);
    a.floats("sample_loss", sample_loss);
    a.numel("sample_loss", sample_loss, B);
    a.floats("tokens", tokens);
    a.numel("tokens", tokens, B);
    k_.per_sample_loss(sample_loss.f32(), tokens.f32(), losses.f32(), opt(mask), B, T);
  }

  // ---- optimizer and vector ops
  void adamw_update(const TensorView& param, const TensorView& m, const TensorView& v, const TensorView& grad,
                    const AdamwParams& p) override {
    const ArgCheck a(*this, Op::adamw, "adamw_update");
    const index_t n = check_same(a, grad, {{"param", &param}, {"m", &m}, {"v", &v}}, "grad");
    a.require(p.step >= 1, "step = {} must be >= 1 (bias correction divides by 1 - beta^step)", p.step);
    k_.adamw_update(param.f32(), m.f32(), v.f32(), grad.f32(), n, p.lr, p.beta1, p.beta2, p.eps,
                    p.weight_decay, p.grad_scale, p.step);
  }
  double sum_squares(const TensorView& x) override {
    const ArgCheck a(*this, Op::sum_squares, "sum_squares");
    a.floats("x", x);
    return k_.sum_squares(x.f32(), x.numel());
  }
  double dot(const TensorView& x, const TensorView& y) override {
    const ArgCheck a(*this, Op::dot, "dot");
    const index_t n = check_same(a, x, {{"y", &y}}, "x");
    return k_.dot(x.f32(), y.f32(), n);
  }
  void scale(const TensorView& x, float s) override {
    const ArgCheck a(*this, Op::scale, "scale");
    a.floats("x", x);
    k_.scale(x.f32(), s, x.numel());
  }
  bool all_finite(const TensorView& x) override {
    const ArgCheck a(*this, Op::all_finite, "all_finite");
    a.floats("x", x);
    return k_.all_finite(x.f32(), x.numel());
  }
  void axpby(const TensorView& y, const TensorView& x, float alpha, float beta) override {
    const ArgCheck a(*this, Op::axpby, "axpby");
    const index_t n = check_same(a, x, {{"y", &y}}, "x");
    k_.axpby(y.f32(), x.f32(), n, alpha, beta);
  }

 private:
  using Named = std::initializer_list<std::pair<const char*, const TensorView*>>;

  void check_copy(const char* fn, const TensorView& v, std::size_t bytes) const {
    if (!v.present()) fail<Error>("{}: {}: the view is absent (null data)", name_, fn);
    if (v.device != Device::host)
      fail<Error>("{}: {}: the view {} is on {}, not host memory", name_, fn, shape_str(v.shape),
                  device_name(v.device));
    if (bytes != v.bytes())
      fail<Error>("{}: {}: {} bytes for a {} {} view of {} bytes", name_, fn, bytes, dtype_name(v.dtype),
                  shape_str(v.shape), v.bytes());
  }

  // `ref` and every other named tensor: present floats of the same shape; returns the element count.
  static index_t check_same(const ArgCheck& a, const TensorView& ref, Named others,
                            const char* ref_name = "inp") {
    a.floats(ref_name, ref);
    for (const auto& [name, v] : others) {
      a.floats(name, *v);
      a.shape(name, *v, ref.shape);
    }
    return ref.numel();
  }

  // inp [..., C] with weight [C]; each named tensor has inp's shape. Returns (N, C).
  static std::pair<index_t, index_t> check_norm(const ArgCheck& a, const TensorView& inp,
                                                const TensorView& weight, Named same_as_inp) {
    check_same(a, inp, same_as_inp);
    const index_t C = a.last_dim("inp", inp);
    a.floats("weight", weight);
    a.shape("weight", weight, {C});
    return {inp.numel() / C, C};
  }

  // out [B, T, C] from tokens [B, T], table [V, C] and the optional pos [>= T, C]. Returns (B, T, V, C).
  static std::tuple<index_t, index_t, index_t, index_t> check_embedding(
      const ArgCheck& a, const char* out_name, const TensorView& out, const TensorView& tokens,
      const char* table_name, const TensorView& table, const char* pos_name, const TensorView& pos) {
    a.ids("tokens", tokens);
    a.rank("tokens", tokens, 2);
    a.floats(table_name, table);
    a.rank(table_name, table, 2);
    const index_t B = tokens.shape[0], T = tokens.shape[1], V = table.shape[0], C = table.shape[1];
    a.floats(out_name, out);
    a.shape(out_name, out, {B, T, C});
    if (a.optional_floats(pos_name, pos)) {
      a.require(pos.rank() == 2 && pos.shape[0] >= T && pos.shape[1] == C,
                "{} has shape {}, expected [>= {}, {}] (a row per position t < T)", pos_name,
                shape_str(pos.shape), T, C);
    }
    return {B, T, V, C};
  }

  // inp [..., C] and weight [C, OC] (conv1d) or [OC, C] (linear). Returns (N, C, OC).
  static std::tuple<index_t, index_t, index_t> check_matmul(const ArgCheck& a, const TensorView& inp,
                                                            const TensorView& weight, WeightLayout layout) {
    a.floats("inp", inp);
    a.floats("weight", weight);
    const index_t C = a.last_dim("inp", inp);
    a.rank("weight", weight, 2);
    const bool conv1d = layout == WeightLayout::conv1d;
    const index_t in_dim = conv1d ? weight.shape[0] : weight.shape[1];
    const index_t OC = conv1d ? weight.shape[1] : weight.shape[0];
    a.require(in_dim == C, "weight has shape {}, expected {} for inp {} ({} layout: {})",
              shape_str(weight.shape), conv1d ? shape_str({C, OC}) : shape_str({OC, C}), shape_str(inp.shape),
              conv1d ? "conv1d" : "linear", conv1d ? "[C, OC]" : "[OC, C]");
    return {inp.numel() / C, C, OC};
  }

  static std::pair<index_t, index_t> check_rope(const ArgCheck& a, const char* name, const TensorView& qkv,
                                                const RopeParams& p) {
    check_heads(a, p.n_head, p.n_kv_head, p.head_dim);
    a.require(p.head_dim % 2 == 0, "head_dim = {} must be even (rotate-half pairs x[i] with x[i + hd/2])",
              p.head_dim);
    a.require(p.theta > 0.0f, "theta = {} must be > 0", p.theta);
    a.floats(name, qkv);
    return check_qkv(a, name, qkv, p.n_head, p.n_kv_head, p.head_dim);
  }

  // qkv [B, T, (NH + 2 KVH) hd], the output-sized y [B, T, NH hd] and att [B, NH, T, T]. Returns (B, T).
  static std::pair<index_t, index_t> check_attention(const ArgCheck& a, const TensorView& qkv,
                                                     const TensorView& y, const char* y_name,
                                                     const TensorView& att, const AttentionParams& p) {
    check_heads(a, p.n_head, p.n_kv_head, p.head_dim);
    a.require(p.scale >= 0.0f && p.softcap >= 0.0f && p.window >= 0,
              "scale = {}, softcap = {}, window = {}: none may be negative (0 means the default / none)",
              p.scale, p.softcap, p.window);
    a.floats("qkv", qkv);
    const auto [B, T] = check_qkv(a, "qkv", qkv, p.n_head, p.n_kv_head, p.head_dim);
    a.floats(y_name, y);
    a.shape(y_name, y, {B, T, p.n_head * p.head_dim});
    a.floats("att", att);
    a.shape("att", att, {B, p.n_head, T, T});
    return {B, T};
  }

  // inp [..., 2F] and y [..., F] with the same rows. Returns (N, F).
  static std::pair<index_t, index_t> check_glu(const ArgCheck& a, const TensorView& inp, const TensorView& y,
                                               const char* y_name) {
    a.floats("inp", inp);
    const index_t F2 = a.last_dim("inp", inp);
    a.require(F2 % 2 == 0, "inp has shape {}: the last dim must be even (gate and up halves)",
              shape_str(inp.shape));
    const index_t N = inp.numel() / F2, F = F2 / 2;
    a.floats(y_name, y);
    a.rows(y_name, y, N, F);
    return {N, F};
  }

  // logits [..., V] and targets with one id per row. Returns (N, V).
  static std::pair<index_t, index_t> check_logits(const ArgCheck& a, const TensorView& logits,
                                                  const TensorView& targets) {
    a.floats("logits", logits);
    const index_t V = a.last_dim("logits", logits);
    const index_t N = logits.numel() / V;
    a.ids("targets", targets);
    a.numel("targets", targets, N);
    return {N, V};
  }

  std::string name_;
  CpuKernels k_;
  bool kokkos_;
};

}  // namespace

std::unique_ptr<Backend> make_host_backend() {
  return std::make_unique<CpuBackend>("host", FLOWLM_CPU_KERNELS(flowlm::kernels), true);
}

std::unique_ptr<Backend> make_reference_backend() {
  return std::make_unique<CpuBackend>("reference", FLOWLM_CPU_KERNELS(flowlm::kernels::ref), false);
}

}  // namespace flowlm::kernels
