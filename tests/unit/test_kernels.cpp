// Kernel tests through the Backend interface.
//
// 1. One table of op cases (ggml's test-backend-ops): each case names an op, its shapes and
//    parameters, a tolerance per dtype and a finite-difference step. Every case is registered as
//    one test per compiled backend and dtype (OpCase/<case>/<backend>/<dtype>); a backend that is
//    not available, or does not run the op in that dtype, skips saying so. Each test runs forward
//    and backward against `reference`, checks that backward accumulates (or overwrites, where the
//    op says so), and checks the backend's gradients by central finite differences.
// 2. Semantics the table cannot express: in-place calls, error cases, AdamW against a
//    hand-computed example, NaN/Inf detection, causal/window structure of att (on every compiled
//    backend), the factory, and run-to-run bitwise determinism of the host reductions.
// The cuda instantiations compile into every CUDA build and skip, saying "no CUDA device visible",
// where the machine has no GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "kernels/backend.hpp"
#include "kernels/cuda/device.hpp"
#include "kernels/kernels.hpp"
#include "support/testing.hpp"

namespace {

using flowlm::index_t;
using flowlm::Shape;
using flowlm::kernels::AdamwParams;
using flowlm::kernels::AttentionParams;
using flowlm::kernels::Backend;
using flowlm::kernels::Buffer;
using flowlm::kernels::DType;
using flowlm::kernels::GluKind;
using flowlm::kernels::Op;
using flowlm::kernels::RmsnormParams;
using flowlm::kernels::RopeParams;
using flowlm::kernels::TensorView;
using flowlm::kernels::WeightLayout;
using flowlm::testing::contains;
using flowlm::testing::thrown;
namespace kern = flowlm::kernels;
using Vec = std::vector<float>;
using IVec = std::vector<std::int32_t>;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// ---- bf16 on the host side (round to nearest even), for backends that run bf16 -----------

std::uint16_t to_bf16(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, 4);
  if ((b & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN stays a quiet NaN
  b += 0x7fffu + ((b >> 16) & 1u);
  return static_cast<std::uint16_t>(b >> 16);
}
float from_bf16(std::uint16_t h) {
  const std::uint32_t b = static_cast<std::uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

// ---- the op-case table -----------------------------------------------------------------------

// in: read-only input; inout: updated in place (optimizer state); out: forward output, part of the
// finite-difference objective; saved: forward output kept for backward (compared, not differentiated);
// scratch: workspace with unspecified contents.
enum class Role { in, inout, out, saved, scratch };

struct Fill {
  enum Kind { normal, ids, constant } kind = normal;
  float a = 1.0f, b = 0.0f;  // normal: stddev a, mean b; ids: [0, a); constant: a
};
Fill normal(float sd = 1.0f, float mean = 0.0f) { return {Fill::normal, sd, mean}; }
Fill ids(index_t hi) { return {Fill::ids, static_cast<float>(hi), 0.0f}; }
Fill constant(float v) { return {Fill::constant, v, 0.0f}; }

struct ArgSpec {
  std::string name;
  Role role;
  Shape shape;
  Fill fill = normal();
  bool grad = false;  // an input whose gradient backward writes into "d" + name
};

// Host copies of a case's tensors: inputs, upstream gradients ("d" + output) and initial gradients.
struct HostTensor {
  Shape shape{};
  bool is_ids = false;
  Vec f{};
  IVec i{};
};
using HostData = std::map<std::string, HostTensor>;

// One backend's device tensors for one case, looked up by name; "d" + name is a gradient.
class Tensors {
 public:
  const TensorView& operator[](const std::string& name) const {
    const auto it = bufs.find(name);
    if (it == bufs.end()) throw std::logic_error("op case has no tensor '" + name + "'");
    return it->second.view();
  }
  /// An absent view when the case has no such tensor (optional arguments).
  TensorView opt(const std::string& name) const {
    const auto it = bufs.find(name);
    return it == bufs.end() ? TensorView{} : it->second.view();
  }
  double& scalar(const std::string& name) { return scalars[name]; }

  std::map<std::string, Buffer> bufs;
  std::map<std::string, double> scalars;
};

using Body = std::function<void(Backend&, Tensors&)>;

struct OpCase {
  OpCase(std::string case_name, Op case_op) : name(std::move(case_name)), op(case_op) {}
  std::string name;
  Op op;
  std::vector<ArgSpec> args;
  Body forward;
  Body backward;          // empty for forward-only ops
  double tol_f32 = 5e-5;  // normalised max error vs reference (see close())
  double tol_bf16 = 3e-2;
  double fd_step = 1e-2;        // central-difference step
  std::size_t fd_samples = 48;  // elements checked per tensor when it has more than kFdAll
  double fd_atol = 2e-3, fd_rtol = 1e-2;
  bool grads_overwrite = false;            // backward overwrites its gradients (crossentropy)
  std::function<void(HostData&)> prepare;  // adjusts the random data (masked rows, NaNs, ...)
};

// Tolerances. Parity: the reference sums in double, the host in float (BLAS, vectorised reductions,
// an exp approximation within 2 ulp); relative float error over sums of <= a few hundred terms stays
// below ~1e-5 of the tensor's scale, hence 5e-5 (normalised max error). Finite differences: outputs
// are float (relative rounding ~6e-8); with outputs of O(1) and a few hundred terms the rounding noise
// in the objective is ~1e-6, i.e. ~5e-5 in the derivative at step 1e-2, and the truncation error is
// O(step^2 |L'''|) ~ 1e-4 for these smooth functions: atol 2e-3 + rtol 1e-2 leaves margin yet catches
// any wrong term (errors of O(|g|)).

OpCase embedding_case(std::string name, index_t B, index_t T, index_t C, index_t V, bool positions,
                      float scale) {
  OpCase c{std::move(name), Op::embedding};
  c.args = {{"tokens", Role::in, {B, T}, ids(V)}, {"wte", Role::in, {V, C}, normal(), true}};
  // A table with more rows than T (block_size > T): rows >= T must get no gradient.
  if (positions) c.args.push_back({"wpe", Role::in, {T + 2, C}, normal(), true});
  c.args.push_back({"out", Role::out, {B, T, C}});
  c.forward = [=](Backend& be, Tensors& t) {
    be.embedding_forward(t["out"], t["tokens"], t["wte"], t.opt("wpe"), scale);
  };
  c.backward = [=](Backend& be, Tensors& t) {
    be.embedding_backward(t["dwte"], t.opt("dwpe"), t["dout"], t["tokens"], scale);
  };
  c.prepare = [=](HostData& h) {  // repeated tokens: their gradients add up
    IVec& tok = h["tokens"].i;
    tok[1] = tok[0];
    tok[static_cast<std::size_t>(T)] = tok[0];
  };
  return c;
}

OpCase layernorm_case(std::string name, Shape shape, float eps) {
  OpCase c{std::move(name), Op::layernorm};
  const index_t C = shape.back();
  Shape rows(shape.begin(), shape.end() - 1);
  c.args = {{"inp", Role::in, shape, normal(1.5f, 0.3f), true},
            {"weight", Role::in, {C}, normal(0.3f, 1.0f), true},
            {"bias", Role::in, {C}, normal(0.3f), true},
            {"out", Role::out, shape},
            {"mean", Role::saved, rows},
            {"rstd", Role::saved, rows}};
  c.forward = [=](Backend& be, Tensors& t) {
    be.layernorm_forward(t["out"], t["mean"], t["rstd"], t["inp"], t["weight"], t["bias"], eps);
  };
  c.backward = [](Backend& be, Tensors& t) {
    be.layernorm_backward(t["dinp"], t["dweight"], t["dbias"], t["dout"], t["inp"], t["weight"], t["mean"],
                          t["rstd"]);
  };
  return c;
}

OpCase rmsnorm_case(std::string name, Shape shape, float eps, bool plus_one) {
  OpCase c{std::move(name), Op::rmsnorm};
  const index_t C = shape.back();
  Shape rows(shape.begin(), shape.end() - 1);
  // Gemma's weights are offsets from 1, so they are drawn around 0.
  c.args = {{"inp", Role::in, shape, normal(1.5f, 0.3f), true},
            {"weight", Role::in, {C}, normal(0.3f, plus_one ? 0.0f : 1.0f), true},
            {"out", Role::out, shape},
            {"rstd", Role::saved, rows}};
  const RmsnormParams p{eps, plus_one};
  c.forward = [=](Backend& be, Tensors& t) {
    be.rmsnorm_forward(t["out"], t["rstd"], t["inp"], t["weight"], p);
  };
  c.backward = [=](Backend& be, Tensors& t) {
    be.rmsnorm_backward(t["dinp"], t["dweight"], t["dout"], t["inp"], t["weight"], t["rstd"], p);
  };
  return c;
}

// inp [rows..., C] @ W -> [rows..., OC]; dinp / dweight false: that gradient is not asked for (absent).
OpCase matmul_case(std::string name, Shape inp, index_t OC, WeightLayout layout, bool bias, bool dinp = true,
                   bool dweight = true) {
  OpCase c{std::move(name), Op::matmul};
  const index_t C = inp.back();
  Shape out = inp;
  out.back() = OC;
  const Shape w = layout == WeightLayout::conv1d ? Shape{C, OC} : Shape{OC, C};
  c.args = {{"inp", Role::in, inp, normal(), dinp}, {"weight", Role::in, w, normal(0.3f), dweight}};
  if (bias) c.args.push_back({"bias", Role::in, {OC}, normal(), true});
  c.args.push_back({"out", Role::out, out});
  c.forward = [=](Backend& be, Tensors& t) {
    be.matmul_forward(t["out"], t["inp"], t["weight"], t.opt("bias"), layout);
  };
  c.backward = [=](Backend& be, Tensors& t) {
    be.matmul_backward(t.opt("dinp"), t.opt("dweight"), t.opt("dbias"), t["dout"], t["inp"], t["weight"],
                       layout);
  };
  return c;
}

// rope is in place; the case copies qkv into y first (axpby with b = 0), and turns the in-place
// backward into an accumulation through a scratch copy, so that the harness's checks apply.
OpCase rope_case(std::string name, index_t B, index_t T, index_t NH, index_t KVH, index_t hd, float theta) {
  OpCase c{std::move(name), Op::rope};
  const Shape qkv{B, T, (NH + 2 * KVH) * hd};
  c.args = {{"qkv", Role::in, qkv, normal(), true}, {"y", Role::out, qkv}, {"tmp", Role::scratch, qkv}};
  const RopeParams p{NH, KVH, hd, theta};
  c.forward = [=](Backend& be, Tensors& t) {
    be.axpby(t["y"], t["qkv"], 1.0f, 0.0f);
    be.rope_forward(t["y"], p);
  };
  c.backward = [=](Backend& be, Tensors& t) {
    be.axpby(t["tmp"], t["dy"], 1.0f, 0.0f);
    be.rope_backward(t["tmp"], p);
    be.axpby(t["dqkv"], t["tmp"], 1.0f, 1.0f);
  };
  return c;
}

// rope at given positions (forward only: decoding never differentiates), on a copy of qkv as rope_case.
OpCase rope_at_case(std::string name, index_t B, index_t T, index_t NH, index_t KVH, index_t hd, float theta,
                    index_t max_start) {
  OpCase c{std::move(name), Op::rope};
  const Shape qkv{B, T, (NH + 2 * KVH) * hd};
  c.args = {
      {"qkv", Role::in, qkv, normal()}, {"start", Role::in, {B}, ids(max_start + 1)}, {"y", Role::out, qkv}};
  const RopeParams p{NH, KVH, hd, theta};
  c.forward = [=](Backend& be, Tensors& t) {
    be.axpby(t["y"], t["qkv"], 1.0f, 0.0f);
    be.rope_forward_at(t["y"], t["start"], p);
  };
  return c;
}

// Cache writes into caches holding other values (kept where nothing is written); start + T <= S.
OpCase kv_cache_write_case(std::string name, index_t B, index_t T, index_t NH, index_t KVH, index_t hd,
                           index_t S) {
  OpCase c{std::move(name), Op::kv_cache};
  c.args = {{"qkv", Role::in, {B, T, (NH + 2 * KVH) * hd}, normal()},
            {"start", Role::in, {B}, ids(S - T + 1)},
            {"k_cache", Role::inout, {B, KVH, S, hd}, normal()},
            {"v_cache", Role::inout, {B, KVH, S, hd}, normal()}};
  c.tol_f32 = 0.0;
  const AttentionParams p{NH, KVH, hd};
  c.forward = [=](Backend& be, Tensors& t) {
    be.kv_cache_write(t["k_cache"], t["v_cache"], t["qkv"], t["start"], p);
  };
  return c;
}

// Queries at positions start[b] + t over caches whose every slot holds a key (what has been written).
OpCase attention_cached_case(std::string name, index_t B, index_t T, index_t NH, index_t KVH, index_t hd,
                             index_t S, float scale = 0, float softcap = 0, index_t window = 0) {
  OpCase c{std::move(name), Op::kv_cache};
  c.args = {{"qkv", Role::in, {B, T, (NH + 2 * KVH) * hd}, normal()},
            {"start", Role::in, {B}, ids(S - T + 1)},
            {"k_cache", Role::in, {B, KVH, S, hd}, normal()},
            {"v_cache", Role::in, {B, KVH, S, hd}, normal()},
            {"out", Role::out, {B, T, NH * hd}}};
  const AttentionParams p{NH, KVH, hd, scale, softcap, window};
  c.forward = [=](Backend& be, Tensors& t) {
    be.attention_cached(t["out"], t["qkv"], t["k_cache"], t["v_cache"], t["start"], p);
  };
  return c;
}

OpCase attention_case(std::string name, index_t B, index_t T, index_t NH, index_t KVH, index_t hd,
                      float scale = 0, float softcap = 0, index_t window = 0, float sd = 1.0f) {
  OpCase c{std::move(name), Op::attention};
  c.args = {{"qkv", Role::in, {B, T, (NH + 2 * KVH) * hd}, normal(sd), true},
            {"out", Role::out, {B, T, NH * hd}},
            {"att", Role::saved, {B, NH, T, T}},
            {"datt", Role::scratch, {B, NH, T, T}}};
  const AttentionParams p{NH, KVH, hd, scale, softcap, window};
  c.forward = [=](Backend& be, Tensors& t) { be.attention_forward(t["out"], t["att"], t["qkv"], p); };
  c.backward = [=](Backend& be, Tensors& t) {
    be.attention_backward(t["dqkv"], t["datt"], t["dout"], t["qkv"], t["att"], p);
  };
  return c;
}

OpCase gelu_case(std::string name, index_t n) {
  OpCase c{std::move(name), Op::gelu};
  c.args = {{"inp", Role::in, {n}, normal(2.5f), true}, {"out", Role::out, {n}}};
  c.forward = [](Backend& be, Tensors& t) { be.gelu_forward(t["out"], t["inp"]); };
  c.backward = [](Backend& be, Tensors& t) { be.gelu_backward(t["dinp"], t["inp"], t["dout"]); };
  c.prepare = [](HostData& h) {  // saturated tails and the origin
    Vec& x = h["inp"].f;
    x[0] = -30.0f, x[1] = 30.0f, x[2] = 0.0f;
  };
  return c;
}

OpCase glu_case(std::string name, Shape rows, index_t F, GluKind kind) {
  OpCase c{std::move(name), Op::glu};
  Shape inp = rows, out = rows;
  inp.push_back(2 * F);
  out.push_back(F);
  c.args = {{"inp", Role::in, inp, normal(1.5f), true}, {"out", Role::out, out}};
  c.forward = [=](Backend& be, Tensors& t) { be.glu_forward(t["out"], t["inp"], kind); };
  c.backward = [=](Backend& be, Tensors& t) { be.glu_backward(t["dinp"], t["inp"], t["dout"], kind); };
  return c;
}

OpCase residual_case(std::string name, Shape shape) {
  OpCase c{std::move(name), Op::residual};
  c.args = {{"a", Role::in, shape, normal(), true},
            {"b", Role::in, shape, normal(), true},
            {"out", Role::out, shape}};
  c.forward = [](Backend& be, Tensors& t) { be.residual_forward(t["out"], t["a"], t["b"]); };
  c.backward = [](Backend& be, Tensors& t) { be.residual_backward(t["da"], t["db"], t["dout"]); };
  return c;
}

OpCase softcap_case(std::string name, Shape shape, float cap) {
  OpCase c{std::move(name), Op::softcap};
  c.args = {{"inp", Role::in, shape, normal(1.5f * cap), true}, {"out", Role::out, shape}};
  c.forward = [=](Backend& be, Tensors& t) { be.softcap_forward(t["out"], t["inp"], cap); };
  c.backward = [=](Backend& be, Tensors& t) { be.softcap_backward(t["dinp"], t["out"], t["dout"], cap); };
  return c;
}

// With a mask, rows 2 and 5 (of N >= 6) are masked, carry out-of-range targets and get dlosses 0
// (as the trainer does); row 0 has a wide range of logits (exp underflow).
OpCase crossentropy_case(std::string name, index_t N, index_t V, bool masked) {
  OpCase c{std::move(name), Op::crossentropy};
  c.args = {{"logits", Role::in, {N, V}, normal(2.0f), true}, {"targets", Role::in, {N}, ids(V)}};
  if (masked) c.args.push_back({"mask", Role::in, {N}, constant(1.0f)});
  c.args.push_back({"losses", Role::out, {N}});
  c.grads_overwrite = true;
  c.forward = [](Backend& be, Tensors& t) {
    be.crossentropy_forward(t["losses"], t["logits"], t["targets"], t.opt("mask"));
  };
  c.backward = [](Backend& be, Tensors& t) {
    be.crossentropy_backward(t["dlogits"], t["logits"], t["targets"], t["dlosses"]);
  };
  c.prepare = [=](HostData& h) {
    for (index_t v = 0; v < V; ++v) h["logits"].f[static_cast<std::size_t>(v)] *= 40.0f;
    if (!masked) return;
    for (const std::size_t n : {std::size_t{2}, std::size_t{5}}) {
      h["mask"].f[n] = 0.0f;
      h["dlosses"].f[n] = 0.0f;
    }
    h["targets"].i[2] = -1;  // padding
    h["targets"].i[5] = static_cast<std::int32_t>(V) + 100;
  };
  return c;
}

OpCase per_sample_loss_case(std::string name, index_t B, index_t T, bool masked) {
  OpCase c{std::move(name), Op::per_sample_loss};
  c.args = {{"losses", Role::in, {B, T}, normal(1.0f, 3.0f)}};
  if (masked) c.args.push_back({"mask", Role::in, {B, T}, constant(1.0f)});
  c.args.push_back({"sample_loss", Role::out, {B}});
  c.args.push_back({"tokens", Role::out, {B}});
  c.forward = [](Backend& be, Tensors& t) {
    be.per_sample_loss(t["sample_loss"], t["tokens"], t["losses"], t.opt("mask"));
  };
  c.prepare = [=](HostData& h) {
    if (!masked) return;
    Vec& m = h["mask"].f;
    for (std::size_t i = 0; i < m.size(); ++i) m[i] = (i % 5 < 2) ? 0.0f : 1.0f;
    for (index_t t = 0; t < T; ++t) m[static_cast<std::size_t>(t)] = 0.0f;  // sample 0 has no counted token
  };
  return c;
}

OpCase adamw_case(std::string name, index_t n, AdamwParams p) {
  OpCase c{std::move(name), Op::adamw};
  c.args = {{"param", Role::inout, {n}, normal()},
            {"m", Role::inout, {n}, normal(0.01f)},
            {"v", Role::inout, {n}, normal(1e-3f)},
            {"grad", Role::in, {n}, normal()}};
  c.tol_f32 = 1e-6;
  c.forward = [=](Backend& be, Tensors& t) { be.adamw_update(t["param"], t["m"], t["v"], t["grad"], p); };
  c.prepare = [](HostData& h) {  // a second moment is never negative
    for (float& x : h["v"].f) x = std::fabs(x);
  };
  return c;
}

OpCase sum_squares_case(std::string name, index_t n) {
  OpCase c{std::move(name), Op::sum_squares};
  c.args = {{"x", Role::in, {n}, normal()}};
  c.tol_f32 = 1e-9;
  c.forward = [](Backend& be, Tensors& t) { t.scalar("sum_squares") = be.sum_squares(t["x"]); };
  return c;
}

OpCase dot_case(std::string name, index_t n) {
  OpCase c{std::move(name), Op::dot};
  c.args = {{"x", Role::in, {n}, normal()}, {"y", Role::in, {n}, normal()}};
  c.tol_f32 = 1e-9;
  c.forward = [](Backend& be, Tensors& t) { t.scalar("dot") = be.dot(t["x"], t["y"]); };
  return c;
}

OpCase scale_case(std::string name, index_t n, float s) {
  OpCase c{std::move(name), Op::scale};
  c.args = {{"x", Role::inout, {n}, normal()}};
  c.tol_f32 = 0.0;
  c.forward = [=](Backend& be, Tensors& t) { be.scale(t["x"], s); };
  return c;
}

// bad: the value planted at index `at` (0 plants nothing).
OpCase all_finite_case(std::string name, index_t n, float bad, index_t at) {
  OpCase c{std::move(name), Op::all_finite};
  c.args = {{"x", Role::in, {n}, normal()}};
  c.tol_f32 = 0.0;
  c.forward = [](Backend& be, Tensors& t) { t.scalar("all_finite") = be.all_finite(t["x"]) ? 1.0 : 0.0; };
  c.prepare = [=](HostData& h) {
    if (bad != 0.0f) h["x"].f[static_cast<std::size_t>(at)] = bad;
  };
  return c;
}

// With b == 0, y starts as NaN: it must not be read.
OpCase axpby_case(std::string name, index_t n, float a, float b) {
  OpCase c{std::move(name), Op::axpby};
  c.args = {{"y", Role::inout, {n}, b == 0.0f ? constant(kNaN) : normal()}, {"x", Role::in, {n}, normal()}};
  c.tol_f32 = 1e-7;
  c.forward = [=](Backend& be, Tensors& t) { be.axpby(t["y"], t["x"], a, b); };
  return c;
}

// Zeros planted at every 7th element: sign(0) = 0 is part of the contract.
OpCase sign_case(std::string name, index_t n) {
  OpCase c{std::move(name), Op::sign};
  c.args = {{"out", Role::out, {n}, constant(kNaN)}, {"x", Role::in, {n}, normal()}};
  c.tol_f32 = 0.0;
  c.forward = [](Backend& be, Tensors& t) { be.sign(t["out"], t["x"]); };
  c.prepare = [](HostData& h) {
    for (std::size_t i = 0; i < h["x"].f.size(); i += 7) h["x"].f[i] = 0.0f;
  };
  return c;
}

// Fewer finite differences for the large cases, whose reference forwards are costly.
OpCase fd_sampled(OpCase c, std::size_t samples) {
  c.fd_samples = samples;
  return c;
}

// The table. Small shapes give exhaustive finite differences; the larger ones cover several host
// row chunks, attention GEMM blocks of 64 rows with a partial last block, and multi-block reductions.
const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases{
      embedding_case("embedding_gpt2", 2, 5, 8, 11, true, 1.0f),
      embedding_case("embedding_gemma_scaled_no_positions", 2, 5, 8, 11, false, std::sqrt(8.0f)),
      embedding_case("embedding_odd", 3, 7, 37, 50, true, 1.0f),
      layernorm_case("layernorm", {6, 10}, 1e-5f),
      layernorm_case("layernorm_odd_tiny_eps", {3, 41, 37}, 1e-6f),
      rmsnorm_case("rmsnorm_llama", {6, 10}, 1e-6f, false),
      rmsnorm_case("rmsnorm_gemma_plus_one", {6, 10}, 1e-6f, true),
      rmsnorm_case("rmsnorm_odd_large_eps", {3, 41, 37}, 1e-5f, false),
      rmsnorm_case("rmsnorm_plus_one_odd", {2, 33, 19}, 1e-6f, true),
      matmul_case("matmul_conv1d_bias", {7, 6}, 9, WeightLayout::conv1d, true),
      matmul_case("matmul_conv1d_no_bias_3d", {2, 4, 6}, 5, WeightLayout::conv1d, false),
      matmul_case("matmul_linear_bias", {7, 6}, 9, WeightLayout::linear, true),
      matmul_case("matmul_linear_no_bias", {5, 8}, 13, WeightLayout::linear, false),
      matmul_case("matmul_lm_head_no_dinp", {6, 8}, 37, WeightLayout::linear, false, false),
      // 13 rows: the host's few-row forwards in a group of 8 and one of 5, with partial column blocks.
      matmul_case("matmul_linear_decode_rows", {13, 40}, 37, WeightLayout::linear, true),
      matmul_case("matmul_conv1d_decode_rows", {13, 40}, 70, WeightLayout::conv1d, true),
      matmul_case("matmul_frozen_weight_no_dweight", {7, 6}, 9, WeightLayout::linear, true, true, false),
      fd_sampled(matmul_case("matmul_conv1d_bias_large", {2, 50, 40}, 121, WeightLayout::conv1d, true), 12),
      fd_sampled(matmul_case("matmul_linear_bias_large", {2, 50, 40}, 83, WeightLayout::linear, true), 12),
      rope_case("rope_theta1e4", 2, 5, 2, 2, 8, 10000.0f),
      rope_case("rope_gqa_theta5e5", 2, 40, 4, 1, 16, 500000.0f),
      rope_case("rope_odd_heads_theta1e4", 1, 70, 3, 3, 6, 10000.0f),
      rope_at_case("rope_at_decode_step", 3, 1, 2, 1, 8, 10000.0f, 40),
      rope_at_case("rope_at_chunk_gqa", 2, 6, 4, 2, 16, 500000.0f, 70),
      kv_cache_write_case("kv_cache_write_step", 3, 1, 4, 2, 8, 9),
      kv_cache_write_case("kv_cache_write_chunk", 2, 5, 2, 2, 4, 12),
      attention_cached_case("attention_cached_step_gqa", 3, 1, 4, 2, 8, 20),
      attention_cached_case("attention_cached_chunk_mha", 2, 4, 3, 3, 5, 11),
      attention_cached_case("attention_cached_softcap_scale", 2, 1, 2, 1, 4, 9, 0.5f, 2.0f),
      attention_cached_case("attention_cached_window", 2, 3, 2, 2, 4, 15, 0, 0, 4),
      fd_sampled(attention_cached_case("attention_cached_large", 4, 1, 8, 2, 32, 300, 0, 3.0f, 100), 1),
      attention_case("attention_mha", 2, 5, 3, 3, 4),
      attention_case("attention_gqa", 2, 6, 4, 2, 4),
      attention_case("attention_mqa_odd_head_dim", 1, 7, 3, 1, 5),
      attention_case("attention_softcap_scale", 2, 6, 2, 1, 4, 0.5f, 2.0f, 0, 1.5f),
      attention_case("attention_sliding_window", 2, 9, 2, 2, 4, 0, 0, 3),
      attention_case("attention_window_1", 1, 5, 2, 1, 4, 0, 0, 1),
      fd_sampled(attention_case("attention_gqa_window_softcap_large", 2, 70, 4, 2, 8, 0, 5.0f, 20), 16),
      fd_sampled(attention_case("attention_mha_large", 2, 70, 4, 4, 24), 16),
      gelu_case("gelu", 64),
      fd_sampled(gelu_case("gelu_large", 3 * 8192 + 5), 16),
      glu_case("swiglu", {6}, 7, GluKind::swiglu),
      glu_case("geglu", {6}, 7, GluKind::geglu),
      glu_case("swiglu_odd_3d", {3, 5}, 33, GluKind::swiglu),
      glu_case("geglu_odd_3d", {3, 5}, 33, GluKind::geglu),
      residual_case("residual", {4, 9}),
      fd_sampled(residual_case("residual_large", {3, 130, 96}), 16),
      softcap_case("softcap_cap3", {5, 13}, 3.0f),
      softcap_case("softcap_gemma2_logits_cap30", {4, 301}, 30.0f),
      crossentropy_case("crossentropy_masked", 8, 13, true),
      crossentropy_case("crossentropy_no_mask", 6, 37, false),
      fd_sampled(crossentropy_case("crossentropy_masked_large", 130, 301, true), 16),
      fd_sampled(crossentropy_case("crossentropy_gpt2_vocab", 6, 50257, false), 8),
      per_sample_loss_case("per_sample_loss_masked", 4, 7, true),
      per_sample_loss_case("per_sample_loss_no_mask", 3, 130, false),
      adamw_case("adamw_step3", 20001, AdamwParams{1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 3}),
      adamw_case("adamw_step1_no_decay", 77, AdamwParams{3e-4f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 1}),
      sum_squares_case("sum_squares", 20001),
      dot_case("dot", 20001),
      dot_case("dot_short", 7),
      scale_case("scale", 20001, -0.25f),
      all_finite_case("all_finite_clean", 20001, 0.0f, 0),
      all_finite_case("all_finite_nan", 20001, kNaN, 9000),
      all_finite_case("all_finite_inf_last", 20001, -kInf, 20000),
      axpby_case("axpby_ema", 20001, 0.1f, 0.9f),
      axpby_case("axpby_copy_b0", 1001, 2.0f, 0.0f),
      sign_case("sign", 20001),
  };
  return cases;
}

// ---- the harness -----------------------------------------------------------------------------

// Why a compiled backend cannot run on this machine ("" when it can).
std::string unavailable(const std::string& backend) {
  if (backend == "cuda" && kern::cuda::device_count() == 0)
    return "no CUDA device visible (" + kern::cuda::no_device_reason() + ")";
  return "";
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 1469598103934665603ull;
  for (const char ch : s) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return h;
}

bool has_upstream(const ArgSpec& a) { return a.role == Role::out; }

// Random inputs, upstream gradients for outputs and initial gradients, seeded by the case name.
HostData make_data(const OpCase& c) {
  std::mt19937 rng(static_cast<std::uint32_t>(fnv1a(c.name)));
  HostData h;
  auto floats = [&](const Shape& s, const Fill& f) {
    HostTensor t{s};
    t.f.resize(static_cast<std::size_t>(flowlm::shape_numel(s)));
    std::normal_distribution<float> d(f.b, f.a);
    for (float& x : t.f) x = f.kind == Fill::constant ? f.a : d(rng);
    return t;
  };
  for (const ArgSpec& a : c.args) {
    if (a.role == Role::in || a.role == Role::inout) {
      if (a.fill.kind == Fill::ids) {
        HostTensor t{a.shape, true};
        std::uniform_int_distribution<std::int32_t> d(0, static_cast<std::int32_t>(a.fill.a) - 1);
        t.i.resize(static_cast<std::size_t>(flowlm::shape_numel(a.shape)));
        for (auto& x : t.i) x = d(rng);
        h[a.name] = std::move(t);
      } else {
        h[a.name] = floats(a.shape, a.fill);
      }
    }
    if (!c.backward) continue;
    if (has_upstream(a)) h["d" + a.name] = floats(a.shape, normal());
    // Nonzero initial gradients: backward must add to them (or, for overwriting ops, ignore them).
    if (a.grad) h["d" + a.name] = floats(a.shape, c.grads_overwrite ? constant(kNaN) : normal());
  }
  if (c.prepare) c.prepare(h);
  return h;
}

// One backend's tensors for one case, uploaded from HostData; float tensors in `dtype`.
class Run {
 public:
  Run(Backend& be, const OpCase& c, const HostData& h, DType dtype) : be_(be), c_(c), dtype_(dtype) {
    for (const ArgSpec& a : c.args) {
      const bool is_ids = a.fill.kind == Fill::ids && (a.role == Role::in || a.role == Role::inout);
      add(a.name, a.shape, is_ids);
      if (h.count(a.name))
        upload(a.name, h.at(a.name));
      else
        fill_nan(a.name);  // forward must write every element of its outputs
      if (c.backward && (has_upstream(a) || a.grad)) {
        add("d" + a.name, a.shape, false);
        upload("d" + a.name, h.at("d" + a.name));
      }
    }
  }

  void forward() {
    c_.forward(be_, t_);
    be_.synchronize();
  }
  void backward() {
    c_.backward(be_, t_);
    be_.synchronize();
  }
  Vec read(const std::string& name) const {
    const TensorView& v = t_[name];
    if (v.dtype == DType::f32) {
      Vec out(static_cast<std::size_t>(v.numel()));
      be_.copy_out(out.data(), v.bytes(), v);
      return out;
    }
    std::vector<std::uint16_t> raw(static_cast<std::size_t>(v.numel()));
    be_.copy_out(raw.data(), v.bytes(), v);
    Vec out(raw.size());
    std::transform(raw.begin(), raw.end(), out.begin(), from_bf16);
    return out;
  }
  void write(const std::string& name, const Vec& x) {
    HostTensor t;
    t.f = x;
    upload(name, t);
  }
  double scalar(const std::string& name) { return t_.scalar(name); }
  const std::map<std::string, double>& scalars() const { return t_.scalars; }

 private:
  void add(const std::string& name, const Shape& shape, bool is_ids) {
    t_.bufs[name] = be_.alloc(is_ids ? DType::i32 : dtype_, shape);
  }
  void upload(const std::string& name, const HostTensor& h) {
    const TensorView& v = t_[name];
    if (v.dtype == DType::i32) {
      be_.copy_in(v, h.i.data(), h.i.size() * sizeof(std::int32_t));
    } else if (v.dtype == DType::f32) {
      be_.copy_in(v, h.f.data(), h.f.size() * sizeof(float));
    } else {
      std::vector<std::uint16_t> raw(h.f.size());
      std::transform(h.f.begin(), h.f.end(), raw.begin(), to_bf16);
      be_.copy_in(v, raw.data(), raw.size() * sizeof(std::uint16_t));
    }
  }
  void fill_nan(const std::string& name) {
    HostTensor t;
    t.f.assign(static_cast<std::size_t>(t_[name].numel()), kNaN);
    upload(name, t);
  }

  Backend& be_;
  const OpCase& c_;
  DType dtype_;
  Tensors t_;
};

// Normalised max error: max_i |got - want| / max(1, max_i |want|) <= tol; NaN never passes.
::testing::AssertionResult close(const std::vector<double>& got, const std::vector<double>& want,
                                 double tol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  double scale = 1.0, worst = 0.0;
  std::size_t at = 0;
  for (const double w : want) scale = std::max(scale, std::fabs(w));
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(got[i] - want[i]);
    if (!(e <= worst)) {
      worst = std::isnan(e) ? std::numeric_limits<double>::infinity() : e;
      at = i;
    }
  }
  if (worst / scale <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "normalised error " << worst / scale << " > " << tol << " at index " << at << ": got " << got[at]
         << ", want " << want[at] << " (scale " << scale << ")";
}
std::vector<double> widen(const Vec& v) { return {v.begin(), v.end()}; }
std::vector<double> minus(const Vec& a, const Vec& b) {
  std::vector<double> d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = static_cast<double>(a[i]) - b[i];
  return d;
}

// Finite differences need a few forwards per element: every element of small tensors, an even
// spread of the case's fd_samples (and the last) of larger ones.
constexpr std::size_t kFdAll = 400;
std::vector<std::size_t> fd_indices(std::size_t n, std::size_t samples) {
  std::vector<std::size_t> idx;
  if (n <= kFdAll) {
    for (std::size_t i = 0; i < n; ++i) idx.push_back(i);
    return idx;
  }
  for (std::size_t k = 0; k < samples; ++k) idx.push_back(k * n / samples + (k * 7919) % (n / samples));
  idx.push_back(n - 1);
  return idx;
}

// Central differences of L = sum over outputs of dot(out, dout) against the analytic gradients.
void check_finite_differences(Run& run, const OpCase& c, const HostData& h,
                              const std::map<std::string, std::vector<double>>& analytic) {
  auto L = [&] {
    run.forward();
    double s = 0.0;
    for (const ArgSpec& a : c.args) {
      if (!has_upstream(a)) continue;
      const Vec y = run.read(a.name);
      const Vec& dy = h.at("d" + a.name).f;
      for (std::size_t i = 0; i < y.size(); ++i) s += static_cast<double>(y[i]) * dy[i];
    }
    return s;
  };
  for (const ArgSpec& a : c.args) {
    if (!a.grad) continue;
    Vec x = h.at(a.name).f;
    const std::vector<double>& g = analytic.at(a.name);
    int failures = 0;
    for (const std::size_t i : fd_indices(x.size(), c.fd_samples)) {
      const float x0 = x[i];
      const float xp = x0 + static_cast<float>(c.fd_step), xm = x0 - static_cast<float>(c.fd_step);
      x[i] = xp;
      run.write(a.name, x);
      const double lp = L();
      x[i] = xm;
      run.write(a.name, x);
      const double lm = L();
      x[i] = x0;
      const double fd = (lp - lm) / (static_cast<double>(xp) - xm);
      if (!(std::fabs(fd - g[i]) <= c.fd_atol + c.fd_rtol * std::fabs(g[i]))) {
        ADD_FAILURE() << "d" << a.name << "[" << i << "]: finite difference " << fd << " vs analytic "
                      << g[i];
        if (++failures == 5) break;
      }
    }
    run.write(a.name, x);
  }
}

void run_op_case(const OpCase& c, const std::string& backend, DType dtype) {
  if (const std::string why = unavailable(backend); !why.empty()) GTEST_SKIP() << why;
  std::unique_ptr<Backend> be;
  try {
    be = kern::make_backend(backend);
  } catch (const flowlm::ConfigError& e) {
    GTEST_SKIP() << "backend not available: " << e.what();
  }
  if (!be->supports(c.op, dtype))
    GTEST_SKIP() << backend << " does not run " << kern::op_name(c.op) << " in " << kern::dtype_name(dtype);
  const auto ref = kern::make_backend("reference");
  HostData h = make_data(c);
  if (dtype == DType::bf16) {  // both backends see the same, representable values
    for (auto& entry : h)
      for (float& x : entry.second.f) x = from_bf16(to_bf16(x));
  }
  const double tol = dtype == DType::f32 ? c.tol_f32 : c.tol_bf16;
  const bool compare = backend != "reference";

  // Forward: every output written, and equal to the reference's.
  Run want(*ref, c, h, DType::f32), got(*be, c, h, dtype);
  want.forward();
  got.forward();
  for (const ArgSpec& a : c.args) {
    if (a.role == Role::in || a.role == Role::scratch) continue;
    const Vec y = got.read(a.name);
    const auto nan = std::find_if(y.begin(), y.end(), [](float v) { return std::isnan(v); }) - y.begin();
    EXPECT_EQ(nan, static_cast<std::ptrdiff_t>(y.size()))
        << a.name << "[" << nan << "] is NaN: left unwritten?";
    if (compare) {
      EXPECT_TRUE(close(widen(y), widen(want.read(a.name)), tol)) << a.name;
    }
  }
  for (const auto& [name, value] : want.scalars()) {
    const double g = got.scalar(name);
    if (compare) {
      EXPECT_LE(std::fabs(g - value), tol * std::max(1.0, std::fabs(value))) << name;
    }
  }
  if (!c.backward) return;

  // Backward from nonzero gradients: the same gradients as the reference.
  want.backward();
  got.backward();
  std::map<std::string, std::vector<double>> analytic;
  std::map<std::string, Vec> once;
  for (const ArgSpec& a : c.args) {
    if (!a.grad) continue;
    const std::string d = "d" + a.name;
    const Vec& g0 = h.at(d).f;
    once[d] = got.read(d);
    const Vec w = want.read(d);
    analytic[a.name] = c.grads_overwrite ? widen(once[d]) : minus(once[d], g0);
    const std::vector<double> expected = c.grads_overwrite ? widen(w) : minus(w, g0);
    if (compare) {
      EXPECT_TRUE(close(analytic[a.name], expected, tol)) << d;
    }
  }
  // A second backward adds the same gradient again, or (overwriting ops) leaves the same result.
  got.backward();
  for (const ArgSpec& a : c.args) {
    if (!a.grad) continue;
    const std::string d = "d" + a.name;
    const Vec twice = got.read(d);
    if (c.grads_overwrite) {
      EXPECT_TRUE(close(widen(twice), widen(once[d]), 0.0)) << d << ": a second backward changed the result";
    } else {
      std::vector<double> doubled = analytic[a.name];
      for (double& x : doubled) x *= 2.0;
      EXPECT_TRUE(close(minus(twice, h.at(d).f), doubled, 1e-5)) << d << ": backward does not accumulate";
    }
  }
  if (dtype == DType::f32) check_finite_differences(got, c, h, analytic);
}

class OpCaseTest : public ::testing::Test {
 public:
  OpCaseTest(std::size_t index, std::string backend, DType dtype)
      : index_(index), backend_(std::move(backend)), dtype_(dtype) {}
  void TestBody() override { run_op_case(op_cases()[index_], backend_, dtype_); }

 private:
  std::size_t index_;
  std::string backend_;
  DType dtype_;
};

// Every case on every compiled backend in every dtype, registered before main runs (GoogleTest owns
// and deletes the fixtures the factories return).
const bool registered = [] {
  for (std::size_t i = 0; i < op_cases().size(); ++i) {
    for (const std::string& backend : kern::compiled_backends()) {
      for (const DType dtype : {DType::f32, DType::bf16}) {
        const std::string name = op_cases()[i].name + "/" + backend + "/" + kern::dtype_name(dtype);
        ::testing::RegisterTest("OpCase", name.c_str(), nullptr, nullptr, __FILE__, __LINE__,
                                [=]() -> ::testing::Test* { return new OpCaseTest(i, backend, dtype); });
      }
    }
  }
  return true;
}();

TEST(OpCaseTable, CoversEveryOpAndBothCpuBackends) {
  ASSERT_TRUE(registered);
  for (const Op op : kern::kAllOps) {
    const bool found =
        std::any_of(op_cases().begin(), op_cases().end(), [&](const OpCase& c) { return c.op == op; });
    EXPECT_TRUE(found) << "no op case for " << kern::op_name(op);
  }
  const auto names = kern::compiled_backends();
  EXPECT_NE(std::find(names.begin(), names.end(), "host"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "reference"), names.end());
}

// ---- semantics outside the table ---------------------------------------------------------

// A backend plus helpers that move host vectors in and out of it, for the tests below.
class Backends : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (const std::string why = unavailable(GetParam()); !why.empty()) GTEST_SKIP() << why;
    be = kern::make_backend(GetParam());
  }
  Buffer upload(const Vec& x, Shape shape) {
    Buffer b = be->alloc(DType::f32, std::move(shape));
    be->copy_in(b.view(), x.data(), x.size() * sizeof(float));
    return b;
  }
  Buffer upload_ids(const IVec& x, Shape shape) {
    Buffer b = be->alloc(DType::i32, std::move(shape));
    be->copy_in(b.view(), x.data(), x.size() * sizeof(std::int32_t));
    return b;
  }
  Vec download(const Buffer& b) {
    Vec x(static_cast<std::size_t>(b.view().numel()));
    be->copy_out(x.data(), x.size() * sizeof(float), b.view());
    return x;
  }
  std::unique_ptr<Backend> be;
};

Vec randn(index_t n, std::mt19937& rng, float sd = 1.0f) {
  std::normal_distribution<float> d(0.0f, sd);
  Vec v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

using flowlm::testing::same_bits;

TEST_P(Backends, SupportsF32OnlyAndNamesItself) {
  EXPECT_EQ(be->name(), GetParam());
  EXPECT_EQ(be->device(), GetParam() == "cuda" ? kern::Device::cuda : kern::Device::host);
  for (const Op op : kern::kAllOps) {
    EXPECT_TRUE(be->supports(op, DType::f32)) << kern::op_name(op);
    EXPECT_FALSE(be->supports(op, DType::bf16)) << kern::op_name(op);
  }
}

TEST_P(Backends, BuffersAreZeroedMoveOnlyAndSized) {
  Buffer a = be->alloc(DType::f32, {3, 5});
  EXPECT_EQ(download(a), Vec(15, 0.0f));
  EXPECT_EQ(a.view().bytes(), 60u);
  void* p = a.data();
  Buffer b = std::move(a);
  EXPECT_FALSE(a);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.view({15}).shape, Shape{15});
  EXPECT_TRUE(contains(thrown<flowlm::Error>([&] { (void)b.view({4, 4}); }), "[4, 4]"));
  const Vec five(5, 1.0f);
  EXPECT_TRUE(contains(thrown<flowlm::Error>([&] { be->copy_in(b.view(), five.data(), 20); }), "20 bytes"));
  be->zero(b.view());
  EXPECT_EQ(download(b), Vec(15, 0.0f));
  b.reset();
  EXPECT_FALSE(b);
  EXPECT_EQ(be->alloc(DType::bf16, {7}).view().bytes(), 14u);
}

TEST_P(Backends, CrossEntropyInPlaceMatchesOutOfPlace) {
  const index_t N = 7, V = 19;
  std::mt19937 rng(21);
  const Vec logits = randn(N * V, rng, 2.0f);
  IVec tg(N);
  for (index_t n = 0; n < N; ++n) tg[static_cast<std::size_t>(n)] = static_cast<std::int32_t>((n * 5) % V);
  const Vec dl{0.5f, 0.0f, 1.0f, 2.0f, 0.25f, 0.0f, 1.5f};
  Buffer x = upload(logits, {N, V}), t = upload_ids(tg, {N}), d = upload(dl, {N});
  Buffer g = be->alloc(DType::f32, {N, V});
  be->crossentropy_backward(g.view(), x.view(), t.view(), d.view());
  be->crossentropy_backward(x.view(), x.view(), t.view(), d.view());  // dlogits == logits
  const Vec out = download(g);
  EXPECT_TRUE(same_bits(download(x), out));
  for (index_t v = 0; v < V; ++v) EXPECT_EQ(out[static_cast<std::size_t>(V + v)], 0.0f);  // dlosses 0: zeros
  for (index_t n = 0; n < N; ++n) {  // each row sums to 0 (softmax minus one-hot)
    double s = 0.0;
    for (index_t v = 0; v < V; ++v) s += out[static_cast<std::size_t>(n * V + v)];
    EXPECT_NEAR(s, 0.0, 1e-6) << "row " << n;
  }
}

TEST_P(Backends, CrossEntropyRejectsBadTargetUnlessMasked) {
  const index_t N = 5, V = 7;
  std::mt19937 rng(18);
  Buffer logits = upload(randn(N * V, rng), {N, V}), losses = be->alloc(DType::f32, {N});
  Buffer ones = upload(Vec(N, 1.0f), {N}), g = be->alloc(DType::f32, {N, V});
  for (const std::int32_t bad : {static_cast<std::int32_t>(V), 4242, -3}) {
    Buffer t = upload_ids({0, 1, 2, bad, 4}, {N});
    const std::string msg = thrown<flowlm::DataError>(
        [&] { be->crossentropy_forward(losses.view(), logits.view(), t.view(), ones.view()); });
    EXPECT_TRUE(contains(msg, std::to_string(bad))) << msg;
    EXPECT_TRUE(contains(msg, "row 3")) << msg;
    EXPECT_THROW(be->crossentropy_backward(g.view(), logits.view(), t.view(), ones.view()),
                 flowlm::DataError);
    Buffer mask = upload({1, 1, 1, 0, 1}, {N});  // the same row masked out is fine
    EXPECT_NO_THROW(be->crossentropy_forward(losses.view(), logits.view(), t.view(), mask.view()));
    EXPECT_EQ(download(losses)[3], 0.0f);
  }
}

TEST_P(Backends, EmbeddingRejectsBadTokenId) {
  Buffer wte = be->alloc(DType::f32, {11, 4}), out = be->alloc(DType::f32, {1, 3, 4});
  Buffer tok = upload_ids({1, 11, 2}, {1, 3});
  const std::string msg =
      thrown<flowlm::DataError>([&] { be->embedding_forward(out.view(), tok.view(), wte.view(), {}, 1.0f); });
  EXPECT_TRUE(contains(msg, "embedding_forward")) << msg;
  EXPECT_TRUE(contains(msg, "token id 11")) << msg;
  EXPECT_TRUE(contains(msg, "[0, 11)")) << msg;
}

TEST_P(Backends, ElementwiseOpsRunInPlace) {
  std::mt19937 rng(22);
  const Vec a = randn(50, rng, 5.0f), b = randn(50, rng);
  Buffer x = upload(a, {5, 10}), y = upload(b, {5, 10}), sum = be->alloc(DType::f32, {5, 10});
  be->residual_forward(sum.view(), x.view(), y.view());
  be->residual_forward(x.view(), x.view(), y.view());  // out aliases a
  EXPECT_TRUE(same_bits(download(x), download(sum)));
  Buffer capped = be->alloc(DType::f32, {5, 10}), z = upload(a, {5, 10});
  be->softcap_forward(capped.view(), z.view(), 3.0f);
  be->softcap_forward(z.view(), z.view(), 3.0f);  // the way Gemma-2's logits are capped
  EXPECT_TRUE(same_bits(download(z), download(capped)));
  for (const float v : download(z)) EXPECT_LT(std::fabs(v), 3.0f);
}

// att rows are probabilities over exactly the visible keys: i - window < j <= i.
TEST_P(Backends, AttentionProbabilitiesAreCausalAndWindowed) {
  const index_t B = 2, T = 70, NH = 4, KVH = 2, hd = 8;
  std::mt19937 rng(23);
  Buffer qkv = upload(randn(B * T * (NH + 2 * KVH) * hd, rng), {B, T, (NH + 2 * KVH) * hd});
  Buffer out = be->alloc(DType::f32, {B, T, NH * hd}), att = be->alloc(DType::f32, {B, NH, T, T});
  for (const index_t window : {index_t{0}, index_t{5}}) {
    be->attention_forward(out.view(), att.view(), qkv.view(),
                          AttentionParams{NH, KVH, hd, 0.0f, 4.0f, window});
    const Vec a = download(att);
    for (index_t r = 0; r < B * NH * T; ++r) {
      const index_t t = r % T;
      double s = 0.0;
      for (index_t j = 0; j < T; ++j) {
        const float p = a[static_cast<std::size_t>(r * T + j)];
        const bool visible = j <= t && (window == 0 || j > t - window);
        if (visible) {
          ASSERT_GT(p, 0.0f) << "window " << window << " row " << r << " key " << j;
        } else {
          ASSERT_EQ(p, 0.0f) << "window " << window << " row " << r << " key " << j;
        }
        s += p;
      }
      ASSERT_NEAR(s, 1.0, 1e-5) << "row " << r;
    }
  }
}

// rope at positions is rope of the longer sequence it continues, bit for bit (the same angles).
TEST_P(Backends, RopeAtPositionsContinuesTheSequence) {
  const index_t NH = 4, KVH = 2, hd = 8, row = (NH + 2 * KVH) * hd, T = 3;
  const IVec starts{0, 5, 17};
  std::mt19937 rng(31);
  for (std::size_t b = 0; b < starts.size(); ++b) {
    const index_t s = starts[b], L = s + T;
    const Vec full = randn(L * row, rng);
    Buffer whole = upload(full, {1, L, row});
    be->rope_forward(whole.view(), RopeParams{NH, KVH, hd, 10000.0f});
    const Vec want = download(whole);
    Buffer tail = upload(Vec(full.begin() + s * row, full.end()), {1, T, row});
    Buffer start = upload_ids({static_cast<std::int32_t>(s)}, {1});
    be->rope_forward_at(tail.view(), start.view(), RopeParams{NH, KVH, hd, 10000.0f});
    EXPECT_TRUE(same_bits(download(tail), Vec(want.begin() + s * row, want.end()))) << "start " << s;
  }
}

// Prefill of a chunk, then one token per step through the cache, gives full causal attention's outputs
// (with GQA, soft-cap and a sliding window); rows of one batch at different positions.
TEST_P(Backends, CachedAttentionEqualsFullAttention) {
  const index_t B = 2, T = 23, NH = 4, KVH = 2, hd = 8, row = (NH + 2 * KVH) * hd, S = 30, P = 6;
  std::mt19937 rng(32);
  const Vec x = randn(B * T * row, rng);
  for (const AttentionParams p :
       {AttentionParams{NH, KVH, hd}, AttentionParams{NH, KVH, hd, 0.3f, 3.0f, 7}}) {
    Buffer qkv = upload(x, {B, T, row}), out = be->alloc(DType::f32, {B, T, NH * hd});
    Buffer att = be->alloc(DType::f32, {B, NH, T, T});
    be->attention_forward(out.view(), att.view(), qkv.view(), p);
    const Vec want = download(out);
    Buffer kc = be->alloc(DType::f32, {B, KVH, S, hd}), vc = be->alloc(DType::f32, {B, KVH, S, hd});
    // Row 1 runs one step behind row 0: its first chunk is one token shorter.
    Vec got(want.size(), kNaN);
    for (index_t b = 0; b < B; ++b) {
      const TensorView kb{
          static_cast<float*>(kc.data()) + b * KVH * S * hd, DType::f32, {1, KVH, S, hd}, be->device()};
      const TensorView vb{
          static_cast<float*>(vc.data()) + b * KVH * S * hd, DType::f32, {1, KVH, S, hd}, be->device()};
      for (index_t t0 = 0; t0 < T;) {
        const index_t n = t0 == 0 ? P - b : 1;
        Buffer q =
            upload(Vec(x.begin() + (b * T + t0) * row, x.begin() + (b * T + t0 + n) * row), {1, n, row});
        Buffer start = upload_ids({static_cast<std::int32_t>(t0)}, {1});
        Buffer y = be->alloc(DType::f32, {1, n, NH * hd});
        be->kv_cache_write(kb, vb, q.view(), start.view(), p);
        be->attention_cached(y.view(), q.view(), kb, vb, start.view(), p);
        const Vec yv = download(y);
        std::copy(yv.begin(), yv.end(), got.begin() + (b * T + t0) * NH * hd);
        t0 += n;
      }
    }
    EXPECT_TRUE(close(widen(got), widen(want), 1e-5)) << "softcap " << p.softcap << " window " << p.window;
  }
}

TEST_P(Backends, CachePositionsOutsideTheCacheAreDataErrors) {
  const index_t NH = 2, KVH = 1, hd = 4, S = 8;
  Buffer qkv = be->alloc(DType::f32, {2, 3, (NH + 2 * KVH) * hd});
  Buffer kc = be->alloc(DType::f32, {2, KVH, S, hd}), vc = be->alloc(DType::f32, {2, KVH, S, hd});
  Buffer out = be->alloc(DType::f32, {2, 3, NH * hd});
  Buffer start = upload_ids({5, 6}, {2});  // row 1: positions 6, 7, 8 but the cache holds 0..7
  const AttentionParams p{NH, KVH, hd};
  std::string msg = thrown<flowlm::DataError>(
      [&] { be->kv_cache_write(kc.view(), vc.view(), qkv.view(), start.view(), p); });
  EXPECT_TRUE(contains(msg, "kv_cache_write") && contains(msg, "row 1") && contains(msg, "position 6"))
      << msg;
  msg = thrown<flowlm::DataError>(
      [&] { be->attention_cached(out.view(), qkv.view(), kc.view(), vc.view(), start.view(), p); });
  EXPECT_TRUE(contains(msg, "attention_cached") && contains(msg, "cache of 8")) << msg;
  Buffer wide = be->alloc(DType::f32, {2, KVH + 1, S, hd});
  msg =
      thrown<flowlm::Error>([&] { be->kv_cache_write(wide.view(), vc.view(), qkv.view(), start.view(), p); });
  EXPECT_TRUE(contains(msg, "k_cache")) << msg;
}

TEST_P(Backends, AdamwTwoStepsByHand) {
  // lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01, grad_scale 0.5.
  // Step 1: m_hat / sqrt(v_hat) = sign(g), so p -= 0.1 * (sign(g) + 0.01 p) (for g = 0 only the decay):
  //   1 -> 0.899, -2 -> -1.898, 0.5 -> 0.4995.  Step 2 worked through the same formulas in double.
  Buffer p = upload({1.0f, -2.0f, 0.5f}, {3}), m = be->alloc(DType::f32, {3}), v = be->alloc(DType::f32, {3});
  Buffer g1 = upload({0.1f, -0.2f, 0.0f}, {3}), g2 = upload({0.3f, 0.1f, -0.4f}, {3});
  AdamwParams hp{0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, 1};
  be->adamw_update(p.view(), m.view(), v.view(), g1.view(), hp);
  Vec pv = download(p), mv = download(m), vv = download(v);
  EXPECT_NEAR(pv[0], 0.899, 1e-6);
  EXPECT_NEAR(pv[1], -1.898, 1e-6);
  EXPECT_NEAR(pv[2], 0.4995, 1e-6);
  // m and v carry float's rounding of 1 - beta (1 - 0.999f is off by 1.3e-5 relative).
  EXPECT_NEAR(mv[0], 0.005, 0.005 * 2e-5);
  EXPECT_NEAR(vv[1], 1e-5, 1e-5 * 2e-5);
  hp.step = 2;
  be->adamw_update(p.view(), m.view(), v.view(), g2.view(), hp);
  pv = download(p), mv = download(m), vv = download(v);
  EXPECT_NEAR(pv[0], 0.806322916, 2e-6);
  EXPECT_NEAR(pv[1], -1.86946831, 2e-6);
  EXPECT_NEAR(pv[2], 0.573414177, 2e-6);
  EXPECT_NEAR(mv[2], -0.02, 1e-8);
  EXPECT_NEAR(vv[0], 2.49975e-05, 2.49975e-05 * 2e-5);
  hp.step = 0;
  EXPECT_TRUE(
      contains(thrown<flowlm::Error>([&] { be->adamw_update(p.view(), m.view(), v.view(), g2.view(), hp); }),
               "step = 0"));
}

TEST_P(Backends, ReductionsSeeNanAndInfAnywhere) {
  const index_t n = 20001;  // several host blocks
  Vec x(n, 0.5f);
  Buffer b = upload(x, {n});
  EXPECT_NEAR(be->sum_squares(b.view()), 0.25 * n, 1e-9);
  EXPECT_TRUE(be->all_finite(b.view()));
  Buffer y = upload({1.0f, 2.0f, 3.0f}, {3});
  EXPECT_EQ(be->sum_squares(y.view()), 14.0);
  for (const float bad : {kNaN, kInf, -kInf}) {
    for (const index_t at : {index_t{0}, index_t{9000}, n - 1}) {
      Vec z = x;
      z[static_cast<std::size_t>(at)] = bad;
      Buffer zb = upload(z, {n});
      EXPECT_FALSE(be->all_finite(zb.view())) << bad << " at " << at;
      EXPECT_FALSE(std::isfinite(be->sum_squares(zb.view()))) << bad << " at " << at;
    }
  }
  x[5] = std::numeric_limits<float>::max();  // large but finite
  Buffer big = upload(x, {n});
  EXPECT_TRUE(be->all_finite(big.view()));
  be->scale(big.view(), 0.0f);
  EXPECT_EQ(be->sum_squares(big.view()), 0.0);
}

// Shape, dtype, device and absent-argument errors name the backend, the op and the argument.
TEST_P(Backends, BadArgumentsAreNamed) {
  Buffer inp = be->alloc(DType::f32, {6, 4}), w = be->alloc(DType::f32, {5, 7}),
         out = be->alloc(DType::f32, {6, 7});
  std::string msg = thrown<flowlm::Error>(
      [&] { be->matmul_forward(out.view(), inp.view(), w.view(), {}, WeightLayout::conv1d); });
  EXPECT_TRUE(contains(msg, GetParam() + ": matmul_forward: weight has shape [5, 7], expected [4, 7]"))
      << msg;
  Buffer w2 = be->alloc(DType::f32, {4, 7}), out2 = be->alloc(DType::f32, {6, 8});
  msg = thrown<flowlm::Error>(
      [&] { be->matmul_forward(out2.view(), inp.view(), w2.view(), {}, WeightLayout::conv1d); });
  EXPECT_TRUE(contains(msg, "out has shape [6, 8], expected 6 rows of 7")) << msg;

  Buffer qkv = be->alloc(DType::f32, {2, 3, 40}), y = be->alloc(DType::f32, {2, 3, 16}),
         att = be->alloc(DType::f32, {2, 4, 3, 3});
  msg = thrown<flowlm::Error>([&] {
    be->attention_forward(y.view(), att.view(), qkv.view(), AttentionParams{4, 2, 4});
  });
  EXPECT_TRUE(contains(msg, "attention_forward: qkv has shape [2, 3, 40], expected [B, T, 32]")) << msg;
  msg = thrown<flowlm::Error>([&] {
    be->attention_forward(y.view(), att.view(), qkv.view(), AttentionParams{4, 3, 4});
  });
  EXPECT_TRUE(contains(msg, "n_head = 4 is not a multiple of n_kv_head = 3")) << msg;
  msg = thrown<flowlm::Error>([&] { be->rope_forward(qkv.view(), RopeParams{2, 1, 5, 1e4f}); });
  EXPECT_TRUE(contains(msg, "rope_forward: head_dim = 5 must be even")) << msg;

  Buffer h16 = be->alloc(DType::bf16, {4}), o16 = be->alloc(DType::bf16, {4});
  msg = thrown<flowlm::Error>([&] { be->gelu_forward(o16.view(), h16.view()); });
  EXPECT_TRUE(contains(
      msg, "gelu_forward: inp [4] is bf16, but the " + GetParam() + " backend does not run gelu in bf16"))
      << msg;
  TensorView elsewhere = out.view();
  elsewhere.device = be->device() == kern::Device::host ? kern::Device::cuda : kern::Device::host;
  msg = thrown<flowlm::Error>([&] { be->scale(elsewhere, 2.0f); });
  EXPECT_TRUE(contains(msg, std::string("scale: x [6, 7] is on ") + kern::device_name(elsewhere.device)))
      << msg;
  msg = thrown<flowlm::Error>([&] { be->gelu_forward({}, inp.view()); });
  EXPECT_TRUE(contains(msg, "gelu_forward: out is required but absent")) << msg;
  Buffer tok = be->alloc(DType::f32, {1, 6});
  msg = thrown<flowlm::Error>([&] { be->embedding_forward(out.view(), tok.view(), w.view(), {}, 1.0f); });
  EXPECT_TRUE(contains(msg, "tokens [1, 6] is f32; token ids and targets are i32")) << msg;
}

std::string param_name(const ::testing::TestParamInfo<std::string>& p) { return p.param; }
INSTANTIATE_TEST_SUITE_P(Kernels, Backends, ::testing::ValuesIn(kern::compiled_backends()), param_name);

// "cuda" is a ConfigError naming run.backend where it is compiled out, or compiled in without a device.
TEST(KernelsFactory, UnavailableBackendsAreConfigErrorsNamingRunBackend) {
  const auto names = kern::compiled_backends();
  const bool cuda_compiled = std::find(names.begin(), names.end(), "cuda") != names.end();
  std::string msg;
  if (!cuda_compiled) {
    msg = thrown<flowlm::ConfigError>([] { (void)kern::make_backend("cuda"); });
    EXPECT_TRUE(contains(msg, "run.backend = \"cuda\"")) << msg;
    EXPECT_TRUE(contains(msg, "no CUDA backend")) << msg;
    EXPECT_TRUE(contains(msg, "host, reference")) << msg;
  } else if (kern::cuda::device_count() == 0) {
    msg = thrown<flowlm::ConfigError>([] { (void)kern::make_backend("cuda"); });
    EXPECT_TRUE(contains(msg, "run.backend = \"cuda\": no CUDA device visible (")) << msg;
    EXPECT_TRUE(contains(msg, "CUDA_VISIBLE_DEVICES")) << msg;
  }
  msg = thrown<flowlm::ConfigError>([] { (void)kern::make_backend("nope"); });
  EXPECT_TRUE(contains(msg, "run.backend = \"nope\"")) << msg;
  EXPECT_TRUE(contains(msg, "unknown backend")) << msg;
  EXPECT_TRUE(contains(msg, "host, reference")) << msg;
  for (const std::string& name : names) {
    if (unavailable(name).empty()) {
      EXPECT_EQ(kern::make_backend(name)->name(), name);
    }
  }
}

// ---- host: the GPT-2 entry points that src/model calls are the interface's kernels -------

TEST(KernelsHost, LegacyEntryPointsMatchTheInterfaceBitwise) {
  const auto be = kern::make_backend("host");
  const index_t B = 2, T = 70, C = 24, NH = 3, V = 29, N = B * T;
  std::mt19937 rng(24);
  const Vec qkv = randn(N * 3 * C, rng), x = randn(N * C, rng), w = randn(C, rng), bias = randn(C, rng),
            wte = randn(V * C, rng), wpe = randn(T * C, rng);
  IVec tok(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) tok[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * 7) % V);
  auto view = [](const Vec& v, Shape s) { return kern::host_view(v.data(), std::move(s)); };

  Vec o1(N * C), a1(B * NH * T * T), o2(N * C), a2(B * NH * T * T);
  kern::attention_forward(o1.data(), a1.data(), qkv.data(), B, T, C, NH);
  be->attention_forward(view(o2, {B, T, C}), view(a2, {B, NH, T, T}), view(qkv, {B, T, 3 * C}),
                        AttentionParams{NH, NH, C / NH});
  EXPECT_TRUE(same_bits(o1, o2));
  EXPECT_TRUE(same_bits(a1, a2));

  Vec m1(N), r1(N), m2(N), r2(N);
  kern::layernorm_forward(o1.data(), m1.data(), r1.data(), x.data(), w.data(), bias.data(), N, C);
  be->layernorm_forward(view(o2, {N, C}), view(m2, {N}), view(r2, {N}), view(x, {N, C}), view(w, {C}),
                        view(bias, {C}), 1e-5f);
  EXPECT_TRUE(same_bits(o1, o2));
  EXPECT_TRUE(same_bits(m1, m2));
  EXPECT_TRUE(same_bits(r1, r2));

  kern::encoder_forward(o1.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
  be->embedding_forward(view(o2, {B, T, C}), kern::host_view(tok.data(), {B, T}), view(wte, {V, C}),
                        view(wpe, {T, C}), 1.0f);
  EXPECT_TRUE(same_bits(o1, o2));

  Vec l1(N * V), l2(N * V);
  kern::lm_head_forward(l1.data(), x.data(), wte.data(), N, C, V);
  be->matmul_forward(view(l2, {N, V}), view(x, {N, C}), view(wte, {V, C}), {}, WeightLayout::linear);
  EXPECT_TRUE(same_bits(l1, l2));
}

// ---- host determinism: reductions over rows give bitwise identical results run to run ----

TEST(KernelsHost, BackwardIsBitwiseReproducible) {
  const auto be = kern::make_backend("host");
  const index_t B = 3, T = 80, C = 40, NH = 4, KVH = 2, hd = 10, V = 29, N = B * T;
  const index_t QKV = (NH + 2 * KVH) * hd;
  std::mt19937 rng(19);
  const Vec x = randn(N * C, rng), w = randn(C, rng), dout = randn(N * C, rng), mean = randn(N, rng);
  Vec rstd = randn(N, rng, 0.1f);
  for (float& r : rstd) r += 1.0f;
  IVec tok(static_cast<std::size_t>(N));
  for (index_t i = 0; i < N; ++i) tok[static_cast<std::size_t>(i)] = static_cast<std::int32_t>((i * i) % V);
  const Vec qkv = randn(N * QKV, rng), wmm = randn(C * C, rng), dy = randn(N * NH * hd, rng);
  auto view = [](const Vec& v, Shape s) { return kern::host_view(v.data(), std::move(s)); };
  const AttentionParams ap{NH, KVH, hd, 0.0f, 3.0f, 30};
  Vec att(B * NH * T * T), out(N * NH * hd), datt(B * NH * T * T);
  be->attention_forward(view(out, {B, T, NH * hd}), view(att, {B, NH, T, T}), view(qkv, {B, T, QKV}), ap);
  auto run = [&] {
    std::vector<Vec> r{Vec(N * C, 0.0f),   Vec(C, 0.0f),     Vec(C, 0.0f),
                       Vec(V * C, 0.0f),   Vec(T * C, 0.0f), Vec(C, 0.0f),
                       Vec(N * QKV, 0.0f), Vec(N * C, 0.0f), Vec(C, 0.0f)};
    be->layernorm_backward(view(r[0], {N, C}), view(r[1], {C}), view(r[2], {C}), view(dout, {N, C}),
                           view(x, {N, C}), view(w, {C}), view(mean, {N}), view(rstd, {N}));
    be->embedding_backward(view(r[3], {V, C}), view(r[4], {T, C}), view(dout, {B, T, C}),
                           kern::host_view(tok.data(), {B, T}), 1.0f);
    be->matmul_backward({}, {}, view(r[5], {C}), view(dout, {N, C}), view(x, {N, C}), view(wmm, {C, C}),
                        WeightLayout::conv1d);
    be->attention_backward(view(r[6], {B, T, QKV}), view(datt, {B, NH, T, T}), view(dy, {B, T, NH * hd}),
                           view(qkv, {B, T, QKV}), view(att, {B, NH, T, T}), ap);
    be->rmsnorm_backward(view(r[7], {N, C}), view(r[8], {C}), view(dout, {N, C}), view(x, {N, C}),
                         view(w, {C}), view(rstd, {N}), RmsnormParams{1e-6f, true});
    return r;
  };
  const auto a = run(), b = run();
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_bits(a[i], b[i])) << "output " << i;
}

}  // namespace
