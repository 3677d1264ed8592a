// The two host-memory backends, "host" (Kokkos + OpenBLAS, kernels/host/) and "reference" (plain
// loops, kernels/reference/): one adapter that checks the views (kernels/arg_check.hpp, the checks every
// backend runs) and calls a table of the free kernels, so the two differ only in their kernels.
#include "kernels/cpu_backend.hpp"

#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "kernels/arg_check.hpp"
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
  decltype(&ref::rope_forward_at) rope_forward_at;
  decltype(&ref::kv_cache_write) kv_cache_write;
  decltype(&ref::attention_cached) attention_cached;
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
  decltype(&ref::sign) sign;
};

#define FLOWLM_CPU_KERNELS(ns)                                                                              \
  CpuKernels {                                                                                              \
    &ns::embedding_forward, &ns::embedding_backward, &ns::layernorm_forward, &ns::layernorm_backward,       \
        &ns::rmsnorm_forward, &ns::rmsnorm_backward, &ns::matmul_forward, &ns::matmul_backward,             \
        &ns::linear_forward, &ns::linear_backward, &ns::rope_forward, &ns::rope_backward,                   \
        &ns::rope_forward_at, &ns::kv_cache_write, &ns::attention_cached,                                   \
        static_cast<CpuKernels::AttnFwd>(&ns::attention_forward),                                           \
        static_cast<CpuKernels::AttnBwd>(&ns::attention_backward), &ns::gelu_forward, &ns::gelu_backward,   \
        &ns::glu_forward, &ns::glu_backward, &ns::residual_forward, &ns::residual_backward,                 \
        &ns::softcap_forward, &ns::softcap_backward, &ns::crossentropy_forward, &ns::crossentropy_backward, \
        &ns::per_sample_loss, &ns::adamw_update, &ns::sum_squares, &ns::dot, &ns::scale, &ns::all_finite,   \
        &ns::axpby, &ns::sign                                                                               \
  }

constexpr std::size_t kAlign = 64;  // a cache line: what the vectorised kernels like to start on

float* opt(const TensorView& v) { return v.present() ? v.f32() : nullptr; }

// Token ids index rows of a table: a bad id would read out of bounds, and comes from the data.
void check_ids(const ArgCheck& a, const TensorView& tokens, index_t V) {
  const std::int32_t* ids = tokens.i32();
  for (index_t i = 0; i < tokens.numel(); ++i) {
    if (ids[i] < 0 || ids[i] >= V) args::fail_token_id(a, tokens, i, ids[i], V);
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
    args::alloc(*this, shape);
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
    args::copy(*this, "copy_in", dst, bytes);
    std::memcpy(dst.data, src, bytes);
  }
  void copy_out(void* dst, std::size_t bytes, const TensorView& src) override {
    args::copy(*this, "copy_out", src, bytes);
    std::memcpy(dst, src.data, bytes);
  }
  void zero(const TensorView& x) override {
    args::copy(*this, "zero", x, x.bytes());
    std::memset(x.data, 0, x.bytes());
  }
  void synchronize() override {
    if (kokkos_) Kokkos::fence();
  }

  // ---- embedding
  void embedding_forward(const TensorView& out, const TensorView& tokens, const TensorView& wte,
                         const TensorView& wpe, float scale) override {
    const ArgCheck a(*this, Op::embedding, "embedding_forward");
    const auto [B, T, V, C] = args::embedding_forward(a, out, tokens, wte, wpe);
    check_ids(a, tokens, V);
    k_.embedding_forward(out.f32(), tokens.i32(), wte.f32(), opt(wpe), B, T, C, scale);
  }
  void embedding_backward(const TensorView& dwte, const TensorView& dwpe, const TensorView& dout,
                          const TensorView& tokens, float scale) override {
    const ArgCheck a(*this, Op::embedding, "embedding_backward");
    const auto [B, T, V, C] = args::embedding_backward(a, dwte, dwpe, dout, tokens);
    check_ids(a, tokens, V);
    k_.embedding_backward(dwte.f32(), opt(dwpe), dout.f32(), tokens.i32(), B, T, C, scale);
  }

  // ---- layernorm
  void layernorm_forward(const TensorView& out, const TensorView& mean, const TensorView& rstd,
                         const TensorView& inp, const TensorView& weight, const TensorView& bias,
                         float eps) override {
    const ArgCheck a(*this, Op::layernorm, "layernorm_forward");
    const auto [N, C] = args::layernorm_forward(a, out, mean, rstd, inp, weight, bias, eps);
    k_.layernorm_forward(out.f32(), mean.f32(), rstd.f32(), inp.f32(), weight.f32(), bias.f32(), N, C, eps);
  }
  void layernorm_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dbias,
                          const TensorView& dout, const TensorView& inp, const TensorView& weight,
                          const TensorView& mean, const TensorView& rstd) override {
    const ArgCheck a(*this, Op::layernorm, "layernorm_backward");
    const auto [N, C] = args::layernorm_backward(a, dinp, dweight, dbias, dout, inp, weight, mean, rstd);
    k_.layernorm_backward(dinp.f32(), dweight.f32(), dbias.f32(), dout.f32(), inp.f32(), weight.f32(),
                          mean.f32(), rstd.f32(), N, C);
  }

  // ---- rmsnorm
  void rmsnorm_forward(const TensorView& out, const TensorView& rstd, const TensorView& inp,
                       const TensorView& weight, const RmsnormParams& p) override {
    const ArgCheck a(*this, Op::rmsnorm, "rmsnorm_forward");
    const auto [N, C] = args::rmsnorm_forward(a, out, rstd, inp, weight, p);
    k_.rmsnorm_forward(out.f32(), rstd.f32(), inp.f32(), weight.f32(), N, C, p.eps, p.plus_one);
  }
  void rmsnorm_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dout,
                        const TensorView& inp, const TensorView& weight, const TensorView& rstd,
                        const RmsnormParams& p) override {
    const ArgCheck a(*this, Op::rmsnorm, "rmsnorm_backward");
    const auto [N, C] = args::rmsnorm_backward(a, dinp, dweight, dout, inp, weight, rstd);
    k_.rmsnorm_backward(dinp.f32(), dweight.f32(), dout.f32(), inp.f32(), weight.f32(), rstd.f32(), N, C,
                        p.plus_one);
  }

  // ---- matmul
  void matmul_forward(const TensorView& out, const TensorView& inp, const TensorView& weight,
                      const TensorView& bias, WeightLayout layout) override {
    const ArgCheck a(*this, Op::matmul, "matmul_forward");
    const auto [N, C, OC] = args::matmul_forward(a, out, inp, weight, bias, layout);
    auto fn = layout == WeightLayout::conv1d ? k_.matmul_forward : k_.linear_forward;
    fn(out.f32(), inp.f32(), weight.f32(), opt(bias), N, C, OC);
  }
  void matmul_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dbias,
                       const TensorView& dout, const TensorView& inp, const TensorView& weight,
                       WeightLayout layout) override {
    const ArgCheck a(*this, Op::matmul, "matmul_backward");
    const auto [N, C, OC] = args::matmul_backward(a, dinp, dweight, dbias, dout, inp, weight, layout);
    auto fn = layout == WeightLayout::conv1d ? k_.matmul_backward : k_.linear_backward;
    fn(opt(dinp), opt(dweight), opt(dbias), dout.f32(), inp.f32(), weight.f32(), N, C, OC);
  }

  // ---- rope
  void rope_forward(const TensorView& qkv, const RopeParams& p) override {
    const ArgCheck a(*this, Op::rope, "rope_forward");
    const auto [B, T] = args::rope(a, "qkv", qkv, p);
    k_.rope_forward(qkv.f32(), B, T, p);
  }
  void rope_backward(const TensorView& dqkv, const RopeParams& p) override {
    const ArgCheck a(*this, Op::rope, "rope_backward");
    const auto [B, T] = args::rope(a, "dqkv", dqkv, p);
    k_.rope_backward(dqkv.f32(), B, T, p);
  }

  void rope_forward_at(const TensorView& qkv, const TensorView& start, const RopeParams& p) override {
    const ArgCheck a(*this, Op::rope, "rope_forward_at");
    const auto [B, T] = args::rope_at(a, qkv, start, p);
    for (index_t b = 0; b < B; ++b)
      a.require(start.i32()[b] >= 0, "start[{}] = {} is negative", b, start.i32()[b]);
    k_.rope_forward_at(qkv.f32(), start.i32(), B, T, p);
  }

  // ---- key/value cache
  void kv_cache_write(const TensorView& k_cache, const TensorView& v_cache, const TensorView& qkv,
                      const TensorView& start, const AttentionParams& p) override {
    const ArgCheck a(*this, Op::kv_cache, "kv_cache_write");
    const auto [B, T, S] = args::kv_cache_write(a, k_cache, v_cache, qkv, start, p);
    args::check_positions(a, start.i32(), B, T, S);
    k_.kv_cache_write(k_cache.f32(), v_cache.f32(), qkv.f32(), start.i32(), B, T, S, p);
  }
  void attention_cached(const TensorView& out, const TensorView& qkv, const TensorView& k_cache,
                        const TensorView& v_cache, const TensorView& start,
                        const AttentionParams& p) override {
    const ArgCheck a(*this, Op::kv_cache, "attention_cached");
    const auto [B, T, S] = args::attention_cached(a, out, qkv, k_cache, v_cache, start, p);
    args::check_positions(a, start.i32(), B, T, S);
    k_.attention_cached(out.f32(), qkv.f32(), k_cache.f32(), v_cache.f32(), start.i32(), B, T, S, p);
  }

  // ---- attention
  void attention_forward(const TensorView& out, const TensorView& att, const TensorView& qkv,
                         const AttentionParams& p) override {
    const ArgCheck a(*this, Op::attention, "attention_forward");
    const auto [B, T] = args::attention_forward(a, out, att, qkv, p);
    k_.attention_forward(out.f32(), att.f32(), qkv.f32(), B, T, p);
  }
  void attention_backward(const TensorView& dqkv, const TensorView& datt, const TensorView& dout,
                          const TensorView& qkv, const TensorView& att, const AttentionParams& p) override {
    const ArgCheck a(*this, Op::attention, "attention_backward");
    const auto [B, T] = args::attention_backward(a, dqkv, datt, dout, qkv, att, p);
    k_.attention_backward(dqkv.f32(), datt.f32(), dout.f32(), qkv.f32(), att.f32(), B, T, p);
  }

  // ---- gelu
  void gelu_forward(const TensorView& out, const TensorView& inp) override {
    const ArgCheck a(*this, Op::gelu, "gelu_forward");
    const index_t n = args::gelu_forward(a, out, inp);
    k_.gelu_forward(out.f32(), inp.f32(), n);
  }
  void gelu_backward(const TensorView& dinp, const TensorView& inp, const TensorView& dout) override {
    const ArgCheck a(*this, Op::gelu, "gelu_backward");
    const index_t n = args::gelu_backward(a, dinp, inp, dout);
    k_.gelu_backward(dinp.f32(), inp.f32(), dout.f32(), n);
  }

  // ---- glu
  void glu_forward(const TensorView& out, const TensorView& inp, GluKind kind) override {
    const ArgCheck a(*this, Op::glu, "glu_forward");
    const auto [N, F] = args::glu_forward(a, out, inp);
    k_.glu_forward(out.f32(), inp.f32(), N, F, kind);
  }
  void glu_backward(const TensorView& dinp, const TensorView& inp, const TensorView& dout,
                    GluKind kind) override {
    const ArgCheck a(*this, Op::glu, "glu_backward");
    const auto [N, F] = args::glu_backward(a, dinp, inp, dout);
    k_.glu_backward(dinp.f32(), inp.f32(), dout.f32(), N, F, kind);
  }

  // ---- residual
  void residual_forward(const TensorView& out, const TensorView& a_in, const TensorView& b_in) override {
    const ArgCheck a(*this, Op::residual, "residual_forward");
    const index_t n = args::residual_forward(a, out, a_in, b_in);
    k_.residual_forward(out.f32(), a_in.f32(), b_in.f32(), n);
  }
  void residual_backward(const TensorView& da, const TensorView& db, const TensorView& dout) override {
    const ArgCheck a(*this, Op::residual, "residual_backward");
    const index_t n = args::residual_backward(a, da, db, dout);
    k_.residual_backward(da.f32(), db.f32(), dout.f32(), n);
  }

  // ---- softcap
  void softcap_forward(const TensorView& out, const TensorView& inp, float cap) override {
    const ArgCheck a(*this, Op::softcap, "softcap_forward");
    const index_t n = args::softcap_forward(a, out, inp, cap);
    k_.softcap_forward(out.f32(), inp.f32(), n, cap);
  }
  void softcap_backward(const TensorView& dinp, const TensorView& out, const TensorView& dout,
                        float cap) override {
    const ArgCheck a(*this, Op::softcap, "softcap_backward");
    const index_t n = args::softcap_backward(a, dinp, out, dout, cap);
    k_.softcap_backward(dinp.f32(), out.f32(), dout.f32(), n, cap);
  }

  // ---- losses (the kernels check the counted targets)
  void crossentropy_forward(const TensorView& losses, const TensorView& logits, const TensorView& targets,
                            const TensorView& mask) override {
    const ArgCheck a(*this, Op::crossentropy, "crossentropy_forward");
    const auto [N, V] = args::crossentropy_forward(a, losses, logits, targets, mask);
    k_.crossentropy_forward(losses.f32(), logits.f32(), targets.i32(), opt(mask), N, V);
  }
  void crossentropy_backward(const TensorView& dlogits, const TensorView& logits, const TensorView& targets,
                             const TensorView& dlosses) override {
    const ArgCheck a(*this, Op::crossentropy, "crossentropy_backward");
    const auto [N, V] = args::crossentropy_backward(a, dlogits, logits, targets, dlosses);
    k_.crossentropy_backward(dlogits.f32(), logits.f32(), targets.i32(), dlosses.f32(), N, V);
  }
  void per_sample_loss(const TensorView& sample_loss, const TensorView& tokens, const TensorView& losses,
                       const TensorView& mask) override {
    const ArgCheck a(*this, Op::per_sample_loss, "per_sample_loss");
    const auto [B, T] = args::per_sample_loss(a, sample_loss, tokens, losses, mask);
    k_.per_sample_loss(sample_loss.f32(), tokens.f32(), losses.f32(), opt(mask), B, T);
  }

  // ---- optimizer and vector ops
  void adamw_update(const TensorView& param, const TensorView& m, const TensorView& v, const TensorView& grad,
                    const AdamwParams& p) override {
    const ArgCheck a(*this, Op::adamw, "adamw_update");
    const index_t n = args::adamw_update(a, param, m, v, grad, p);
    k_.adamw_update(param.f32(), m.f32(), v.f32(), grad.f32(), n, p.lr, p.beta1, p.beta2, p.eps,
                    p.weight_decay, p.grad_scale, p.step);
  }
  double sum_squares(const TensorView& x) override {
    const ArgCheck a(*this, Op::sum_squares, "sum_squares");
    const index_t n = args::sum_squares(a, x);
    return k_.sum_squares(x.f32(), n);
  }
  double dot(const TensorView& x, const TensorView& y) override {
    const ArgCheck a(*this, Op::dot, "dot");
    const index_t n = args::dot(a, x, y);
    return k_.dot(x.f32(), y.f32(), n);
  }
  void scale(const TensorView& x, float s) override {
    const ArgCheck a(*this, Op::scale, "scale");
    const index_t n = args::scale(a, x);
    k_.scale(x.f32(), s, n);
  }
  bool all_finite(const TensorView& x) override {
    const ArgCheck a(*this, Op::all_finite, "all_finite");
    const index_t n = args::all_finite(a, x);
    return k_.all_finite(x.f32(), n);
  }
  void axpby(const TensorView& y, const TensorView& x, float alpha, float beta) override {
    const ArgCheck a(*this, Op::axpby, "axpby");
    const index_t n = args::axpby(a, y, x);
    k_.axpby(y.f32(), x.f32(), n, alpha, beta);
  }
  void sign(const TensorView& out, const TensorView& x) override {
    const ArgCheck a(*this, Op::sign, "sign");
    const index_t n = args::sign(a, out, x);
    k_.sign(out.f32(), x.f32(), n);
  }

 private:
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
