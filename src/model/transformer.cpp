#include "model/transformer.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/random.hpp"

namespace flowlm::model {

namespace k = flowlm::kernels;
using k::TensorView;

namespace {

// Box-Muller on splitmix64 output: the same numbers on every platform and compiler
// (std::normal_distribution is implementation-defined).
void fill_normal(float* x, index_t n, double stddev, std::uint64_t stream) {
  std::uint64_t state = stream;
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  for (index_t i = 0; i < n; i += 2) {
    const double u1 = (static_cast<double>(splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;          // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
    x[i] = static_cast<float>(r * std::cos(kTwoPi * u2));
    if (i + 1 < n) x[i + 1] = static_cast<float>(r * std::sin(kTwoPi * u2));
  }
}

}  // namespace

Transformer::Transformer(const ModelConfig& cfg, const std::string& backend)
    : cfg_(config::resolve_model(cfg)), backend_(k::make_backend(backend)), table_(make_param_table(cfg_)) {
  for (std::size_t i = 0; i < table_.size(); ++i) index_.emplace(table_[i].name, i);
  num_params_ = table_.back().offset + table_.back().numel;
  params_ = backend_->alloc(k::DType::f32, {num_params_});
  layout_ = cfg_.arch == "gpt2" ? k::WeightLayout::conv1d : k::WeightLayout::linear;
  qkv_rows_ = (cfg_.n_head + 2 * cfg_.n_kv_head) * cfg_.head_dim;
  in_cols_ = cfg_.mlp == "gelu" ? cfg_.n_ff : 2 * cfg_.n_ff;
  index_layers();
}

void Transformer::index_layers() {
  layers_.assign(static_cast<std::size_t>(cfg_.n_layer), LayerTensors{});
  for (std::size_t i = 0; i < table_.size(); ++i) {
    const ParamSpec& p = table_[i];
    const auto t = static_cast<index_t>(i);
    // The first weight (and bias) of a fused group stands for the group.
    auto first = [&](index_t& w, index_t& b) {
      index_t& slot = p.is_bias ? b : w;
      if (slot < 0) slot = t;
    };
    if (p.layer < 0) {
      switch (p.role) {
        case Role::tok_embed:
          tok_embed_ = t;
          break;
        case Role::pos_embed:
          pos_embed_ = t;
          break;
        case Role::final_norm:
          (p.is_bias ? final_norm_b_ : final_norm_w_) = t;
          break;
        case Role::lm_head:
          head_ = t;
          break;
        default:
          fail<Error>("tensor table: {} has a block role outside the blocks", p.name);
      }
      continue;
    }
    LayerTensors& L = layers_[static_cast<std::size_t>(p.layer)];
    switch (p.role) {
      case Role::attn_norm:
        first(L.attn_norm_w, L.attn_norm_b);
        break;
      case Role::qkv:
        first(L.qkv_w, L.qkv_b);
        break;
      case Role::attn_out:
        first(L.out_w, L.out_b);
        break;
      case Role::attn_post:
        L.attn_post = t;
        break;
      case Role::mlp_norm:
        first(L.mlp_norm_w, L.mlp_norm_b);
        break;
      case Role::mlp_in:
        first(L.in_w, L.in_b);
        break;
      case Role::mlp_out:
        first(L.down_w, L.down_b);
        break;
      case Role::mlp_post:
        L.mlp_post = t;
        break;
      default:
        fail<Error>("tensor table: {} has a global role inside block {}", p.name, p.layer);
    }
  }
  if (cfg_.tie_embeddings) head_ = tok_embed_;
}

void Transformer::require_host(const char* what) const {
  if (backend_->device() != k::Device::host)
    fail<Error>("Transformer::{}: the parameters live on the {} backend; copy them to the host first", what,
                backend_->name());
}

float* Transformer::params() {
  require_host("params");
  return static_cast<float*>(params_.data());
}
const float* Transformer::params() const {
  require_host("params");
  return static_cast<const float*>(params_.data());
}

float* Transformer::grads() {
  require_host("grads");
  if (!grads_) grads_ = backend_->alloc(k::DType::f32, {num_params_});
  return static_cast<float*>(grads_.data());
}
const float* Transformer::grads() const {
  require_host("grads");
  return grads_ ? static_cast<const float*>(grads_.data()) : nullptr;
}

k::TensorView Transformer::grads_view() {
  if (lora_)
    fail<Error>(
        "Transformer::grads_view: the base weights are frozen under LoRA; use trainable_grads_view()");
  if (!grads_) grads_ = backend_->alloc(k::DType::f32, {num_params_});
  return grads_.view();
}

void Transformer::zero_grad() {
  if (lora_) {
    lora_->zero_grad();
    return;
  }
  if (!grads_)
    grads_ = backend_->alloc(k::DType::f32, {num_params_});  // zero-filled
  else
    backend_->zero(grads_.view());
}

const ParamSpec& Transformer::param_spec(const std::string& hf_name) const {
  const auto it = index_.find(hf_name);
  if (it == index_.end())
    fail<Error>("{} model (n_layer = {}) has no parameter named '{}'; names follow Hugging Face, e.g. '{}'",
                cfg_.arch, cfg_.n_layer, hf_name, table_[std::min<std::size_t>(table_.size() - 1, 2)].name);
  return table_[it->second];
}

float* Transformer::param(const std::string& hf_name) { return params() + param_spec(hf_name).offset; }
const float* Transformer::param(const std::string& hf_name) const {
  return params() + param_spec(hf_name).offset;
}

void Transformer::init_random(std::uint64_t seed) {
  // One tensor at a time through host memory: the peak is the largest tensor, not a second model.
  const double proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg_.n_layer));
  std::vector<float> host;
  for (std::size_t t = 0; t < table_.size(); ++t) {
    const auto& p = table_[t];
    host.resize(static_cast<std::size_t>(p.numel));
    switch (p.init) {
      case Init::ones:
        std::fill(host.begin(), host.end(), 1.0f);
        break;
      case Init::zeros:
        std::fill(host.begin(), host.end(), 0.0f);
        break;
      case Init::normal:
      case Init::normal_scaled: {
        std::uint64_t s = seed ^ fnv1a(p.name);
        fill_normal(host.data(), p.numel, p.init == Init::normal_scaled ? proj_std : 0.02, splitmix64(s));
        break;
      }
    }
    backend_->copy_in(pview(static_cast<index_t>(t), {p.numel}), host.data(), host.size() * sizeof(float));
  }
}

// ---- LoRA -------------------------------------------------------------------------------

void Transformer::enable_lora(const config::LoraConfig& spec) {
  if (lora_) fail<Error>("Transformer::enable_lora: the model has adapters already");
  lora_ = std::make_unique<Lora>(table_, spec, *backend_);
  grads_.reset();  // the frozen base has no gradients
  norm_sink_ = backend_->alloc(k::DType::f32, {cfg_.n_embd});
}

void Transformer::merge_lora() {
  if (!lora_) fail<Error>("Transformer::merge_lora: the model has no adapters");
  for (std::size_t t = 0; t < table_.size(); ++t) {
    const auto group = static_cast<index_t>(t);
    if (!lora_->adapts(group)) continue;
    // The group's fused extent: the adapted tensors' group and its same-role neighbours.
    index_t rows = 0;
    for (std::size_t u = t; u < table_.size() && table_[u].layer == table_[t].layer &&
                            table_[u].role == table_[t].role && !table_[u].is_bias;
         ++u)
      rows += table_[u].shape[0];
    const TensorView base = pview(group, {rows, table_[t].shape[1]});
    backend_->axpby(base, lora_->merged(group, base), 1.0f, 0.0f);
  }
  lora_.reset();
  norm_sink_.reset();
}

TensorView Transformer::weight(index_t t, const Shape& shape) {
  const TensorView w = pview(t, shape);
  return lora_ && lora_->adapts(t) ? lora_->merged(t, w) : w;
}

void Transformer::projection_backward(const TensorView& dinp, index_t w, const Shape& wshape, index_t b,
                                      const Shape& bshape, const TensorView& dout, const TensorView& inp) {
  if (!lora_) {
    backend_->matmul_backward(dinp, gview(w, wshape), b >= 0 ? gview(b, bshape) : absent(), dout, inp,
                              pview(w, wshape), layout_);
    return;
  }
  if (!lora_->adapts(w)) {
    backend_->matmul_backward(dinp, absent(), absent(), dout, inp, pview(w, wshape), layout_);
    return;
  }
  const TensorView merged = lora_->merged(w, pview(w, wshape));
  const TensorView dweight = lora_->group_grad(merged);
  backend_->matmul_backward(dinp, dweight, absent(), dout, inp, merged, layout_);
  lora_->backward(w, dweight);
}

TensorView Transformer::norm_grad(index_t t) {
  if (t < 0) return absent();
  if (!lora_) return gview(t);
  return TensorView{norm_sink_.data(), k::DType::f32, table_[static_cast<std::size_t>(t)].shape,
                    backend_->device()};
}

// ---- views ------------------------------------------------------------------------------

TensorView Transformer::pview(index_t t, const Shape& shape) const {
  if (t < 0) return absent();
  const auto& p = table_[static_cast<std::size_t>(t)];
  return TensorView{static_cast<float*>(params_.data()) + p.offset, k::DType::f32, shape, backend_->device()};
}
TensorView Transformer::pview(index_t t) const {
  return t < 0 ? absent() : pview(t, table_[static_cast<std::size_t>(t)].shape);
}
TensorView Transformer::gview(index_t t, const Shape& shape) const {
  if (t < 0) return absent();
  const auto& p = table_[static_cast<std::size_t>(t)];
  return TensorView{static_cast<float*>(grads_.data()) + p.offset, k::DType::f32, shape, backend_->device()};
}
TensorView Transformer::gview(index_t t) const {
  return t < 0 ? absent() : gview(t, table_[static_cast<std::size_t>(t)].shape);
}

TensorView Transformer::act_view(index_t offset, Shape shape) const {
  return TensorView{static_cast<float*>(acts_.data()) + offset, k::DType::f32, std::move(shape),
                    backend_->device()};
}

Transformer::ArenaPlan Transformer::plan_activations(index_t B, index_t T, bool training) const {
  const index_t C = cfg_.n_embd, N = B * T, HD = cfg_.n_head * cfg_.head_dim, F = cfg_.n_ff;
  const index_t post = cfg_.post_norms ? 1 : 0;
  ArenaPlan plan{};
  LayerLayout& L = plan.lay;
  index_t w = 0;
  auto take_w = [&](index_t n) {
    const index_t o = w;
    w += n;
    return o;
  };
  L.h1 = take_w(N * C);
  L.n1_mean = take_w(N);
  L.n1_rstd = take_w(N);
  L.qkv = take_w(N * qkv_rows_);
  L.att_y = take_w(N * HD);
  L.att = take_w(B * cfg_.n_head * T * T);
  L.ao = take_w(N * C);
  L.ao_n = take_w(post * N * C);
  L.ao_rstd = take_w(post * N);
  L.r = take_w(N * C);
  L.h2 = take_w(N * C);
  L.n2_mean = take_w(N);
  L.n2_rstd = take_w(N);
  L.fc = take_w(N * in_cols_);
  L.act = take_w(N * F);
  L.mo = take_w(N * C);
  L.mo_n = take_w(post * N * C);
  L.mo_rstd = take_w(post * N);
  L.x_out = take_w(N * C);
  L.stride = w;

  index_t off = 0;
  auto take = [&](index_t n) {
    const index_t o = off;
    off += n;
    return o;
  };
  plan.x0 = take(N * C);
  plan.layers = take(L.stride * (training ? cfg_.n_layer : 1));
  plan.hf = take(N * C);
  plan.hf_mean = take(N);
  plan.hf_rstd = take(N);
  plan.logits = take(N * cfg_.vocab_size);
  plan.losses = take(N);
  plan.total = off;
  return plan;
}

std::size_t Transformer::activation_bytes(index_t B, index_t T, bool training) const {
  return static_cast<std::size_t>(plan_activations(B, T, training).total) * sizeof(float);
}

void Transformer::layout_activations(index_t B, index_t T, bool training) {
  const ArenaPlan plan = plan_activations(B, T, training);
  lay_ = plan.lay;
  off_x0_ = plan.x0;
  off_layers_ = plan.layers;
  off_hf_ = plan.hf;
  off_hf_mean_ = plan.hf_mean;
  off_hf_rstd_ = plan.hf_rstd;
  off_logits_ = plan.logits;
  off_losses_ = plan.losses;
  if (plan.total > acts_size_) {
    acts_.reset();  // no copy of stale contents on growth
    acts_ = backend_->alloc(k::DType::f32, {plan.total});
    acts_size_ = plan.total;
  }
  B_ = B;
  T_ = T;
  last_training_ = training;
}

Transformer::LayerActs Transformer::layer_acts(index_t l) const {
  const LayerLayout& L = lay_;
  const index_t base = off_layers_ + (last_training_ ? l : 0) * L.stride;
  const index_t N = B_ * T_, C = cfg_.n_embd;
  LayerActs a;
  a.h1 = act_view(base + L.h1, {N, C});
  a.n1_mean = act_view(base + L.n1_mean, {N});
  a.n1_rstd = act_view(base + L.n1_rstd, {N});
  a.qkv = act_view(base + L.qkv, {B_, T_, qkv_rows_});
  a.att_y = act_view(base + L.att_y, {B_, T_, cfg_.n_head * cfg_.head_dim});
  a.att = act_view(base + L.att, {B_, cfg_.n_head, T_, T_});
  a.ao = act_view(base + L.ao, {N, C});
  if (cfg_.post_norms) {
    a.ao_n = act_view(base + L.ao_n, {N, C});
    a.ao_rstd = act_view(base + L.ao_rstd, {N});
    a.mo_n = act_view(base + L.mo_n, {N, C});
    a.mo_rstd = act_view(base + L.mo_rstd, {N});
  }
  a.h2 = act_view(base + L.h2, {N, C});
  a.n2_mean = act_view(base + L.n2_mean, {N});
  a.n2_rstd = act_view(base + L.n2_rstd, {N});
  a.fc = act_view(base + L.fc, {N, in_cols_});
  a.act = act_view(base + L.act, {N, cfg_.n_ff});
  a.mo = act_view(base + L.mo, {N, C});
  if (last_training_) {
    a.r = act_view(base + L.r, {N, C});
    a.x_out = act_view(base + L.x_out, {N, C});
  } else {
    // Inference: the residual stream is updated in place in the embedding output.
    a.r = act_view(off_x0_, {N, C});
    a.x_out = act_view(off_x0_, {N, C});
  }
  return a;
}

TensorView Transformer::residual_in(index_t l) const {
  if (l == 0 || !last_training_) return act_view(off_x0_, {B_ * T_, cfg_.n_embd});
  return layer_acts(l - 1).x_out;
}

// ---- building blocks --------------------------------------------------------------------

void Transformer::norm_forward(const TensorView& out, const TensorView& mean, const TensorView& rstd,
                               const TensorView& in, index_t w, index_t b) {
  if (cfg_.norm == "layernorm")
    backend_->layernorm_forward(out, mean, rstd, in, pview(w), pview(b), static_cast<float>(cfg_.norm_eps));
  else
    backend_->rmsnorm_forward(
        out, rstd, in, pview(w),
        k::RmsnormParams{static_cast<float>(cfg_.norm_eps), cfg_.norm == "rmsnorm_plus_one"});
}

void Transformer::norm_backward(const TensorView& din, const TensorView& dout, const TensorView& in,
                                const TensorView& mean, const TensorView& rstd, index_t w, index_t b) {
  if (cfg_.norm == "layernorm")
    backend_->layernorm_backward(din, norm_grad(w), norm_grad(b), dout, in, pview(w), mean, rstd);
  else
    backend_->rmsnorm_backward(
        din, norm_grad(w), dout, in, pview(w), rstd,
        k::RmsnormParams{static_cast<float>(cfg_.norm_eps), cfg_.norm == "rmsnorm_plus_one"});
}

k::AttentionParams Transformer::attention_params(index_t l, index_t /*B*/, index_t /*T*/) const {
  k::AttentionParams p;
  p.n_head = cfg_.n_head;
  p.n_kv_head = cfg_.n_kv_head;
  p.head_dim = cfg_.head_dim;
  p.scale = static_cast<float>(cfg_.query_scale);
  p.softcap = static_cast<float>(cfg_.attn_softcap);
  const bool windowed = cfg_.sliding_window > 0 && (cfg_.sliding_window_layers == "all" || l % 2 == 0);
  p.window = windowed ? cfg_.sliding_window : 0;
  return p;
}

k::RopeParams Transformer::rope_params(index_t /*B*/, index_t /*T*/) const {
  return k::RopeParams{cfg_.n_head, cfg_.n_kv_head, cfg_.head_dim, static_cast<float>(cfg_.rope_theta)};
}

// ---- forward ----------------------------------------------------------------------------

float Transformer::forward(const std::int32_t* tokens, const std::int32_t* targets, const float* mask,
                           index_t B, index_t T, bool training) {
  const index_t C = cfg_.n_embd, V = cfg_.vocab_size, NL = cfg_.n_layer;
  const bool learned = cfg_.pos == "learned";
  if (B < 1 || T < 1 || (learned && T > cfg_.block_size))
    fail<DataError>("model forward: batch {} x {} tokens; need B >= 1 and 1 <= T <= block_size = {}", B, T,
                    cfg_.block_size);
  if (tokens == nullptr) fail<Error>("model forward: tokens must not be null");
  const index_t N = B * T;
  for (index_t i = 0; i < N; ++i)
    if (tokens[i] < 0 || tokens[i] >= V)
      fail<DataError>(
          "model forward: token {} at position {} (row {}) is outside [0, {}); the data's tokenizer does "
          "not match the model's vocab_size",
          tokens[i], i % T, i / T, V);
  have_forward_ = false;
  layout_activations(B, T, training);
  last_has_targets_ = targets != nullptr;
  last_has_mask_ = mask != nullptr;
  // Inputs to the backend's memory (buffers grow only).
  auto upload = [&](k::Buffer& buf, k::DType dt, const void* src, std::size_t elem) {
    if (!buf || buf.view().numel() < N) buf = backend_->alloc(dt, {N});
    const TensorView v{buf.data(), dt, {N}, backend_->device()};
    backend_->copy_in(v, src, static_cast<std::size_t>(N) * elem);
    return v;
  };
  TensorView tok = upload(tokens_, k::DType::i32, tokens, sizeof(std::int32_t));
  tok.shape = {B, T};
  const TensorView tgt = targets ? upload(targets_, k::DType::i32, targets, sizeof(std::int32_t)) : absent();
  const TensorView msk = mask ? upload(mask_, k::DType::f32, mask, sizeof(float)) : absent();

  const TensorView x0 = act_view(off_x0_, {B, T, C});
  backend_->embedding_forward(x0, tok, pview(tok_embed_), learned ? pview(pos_embed_) : absent(),
                              static_cast<float>(cfg_.embed_scale));
  for (index_t l = 0; l < NL; ++l) {
    const LayerActs a = layer_acts(l);
    const LayerTensors& W = layers_[static_cast<std::size_t>(l)];
    const TensorView x = residual_in(l);
    const Shape qkv_w = layout_ == k::WeightLayout::conv1d ? Shape{C, qkv_rows_} : Shape{qkv_rows_, C};
    const Shape in_w = layout_ == k::WeightLayout::conv1d ? Shape{C, in_cols_} : Shape{in_cols_, C};
    // Attention: r = x + post(out(attn(rope(qkv(norm(x)))))).
    norm_forward(a.h1, a.n1_mean, a.n1_rstd, x, W.attn_norm_w, W.attn_norm_b);
    backend_->matmul_forward(a.qkv, a.h1, weight(W.qkv_w, qkv_w),
                             W.qkv_b >= 0 ? pview(W.qkv_b, {qkv_rows_}) : absent(), layout_);
    if (cfg_.pos == "rope") backend_->rope_forward(a.qkv, rope_params(B, T));
    backend_->attention_forward(a.att_y, a.att, a.qkv, attention_params(l, B, T));
    backend_->matmul_forward(a.ao, a.att_y, weight(W.out_w, table_[W.out_w].shape),
                             W.out_b >= 0 ? pview(W.out_b) : absent(), layout_);
    TensorView attn_out = a.ao;
    if (cfg_.post_norms) {
      norm_forward(a.ao_n, absent(), a.ao_rstd, a.ao, W.attn_post, -1);
      attn_out = a.ao_n;
    }
    backend_->residual_forward(a.r, x, attn_out);
    // MLP: x_out = r + post(down(act(in(norm(r))))).
    norm_forward(a.h2, a.n2_mean, a.n2_rstd, a.r, W.mlp_norm_w, W.mlp_norm_b);
    backend_->matmul_forward(a.fc, a.h2, weight(W.in_w, in_w), W.in_b >= 0 ? pview(W.in_b) : absent(),
                             layout_);
    if (cfg_.mlp == "gelu")
      backend_->gelu_forward(a.act, a.fc);
    else
      backend_->glu_forward(a.act, a.fc, cfg_.mlp == "swiglu" ? k::GluKind::swiglu : k::GluKind::geglu);
    backend_->matmul_forward(a.mo, a.act, weight(W.down_w, table_[W.down_w].shape),
                             W.down_b >= 0 ? pview(W.down_b) : absent(), layout_);
    TensorView mlp_out = a.mo;
    if (cfg_.post_norms) {
      norm_forward(a.mo_n, absent(), a.mo_rstd, a.mo, W.mlp_post, -1);
      mlp_out = a.mo_n;
    }
    backend_->residual_forward(a.x_out, a.r, mlp_out);
  }
  const TensorView hf = act_view(off_hf_, {N, C});
  norm_forward(hf, act_view(off_hf_mean_, {N}), act_view(off_hf_rstd_, {N}), layer_acts(NL - 1).x_out,
               final_norm_w_, final_norm_b_);
  const TensorView logits = act_view(off_logits_, {N, V});
  backend_->matmul_forward(logits, hf, pview(head_), absent(), k::WeightLayout::linear);
  if (cfg_.final_softcap > 0)
    backend_->softcap_forward(logits, logits, static_cast<float>(cfg_.final_softcap));

  have_forward_ = true;
  const TensorView losses = act_view(off_losses_, {N});
  if (!targets) {
    backend_->zero(losses);
    last_count_ = 0;
    return 0.0f;
  }
  backend_->crossentropy_forward(losses, logits, tgt, msk);
  std::vector<float> host(static_cast<std::size_t>(N));
  backend_->copy_out(host.data(), host.size() * sizeof(float), losses);
  double sum = 0.0;
  index_t count = 0;
  for (index_t i = 0; i < N; ++i) {
    if (mask && mask[i] == 0.0f) continue;
    sum += host[static_cast<std::size_t>(i)];
    ++count;
  }
  last_count_ = count;
  return count > 0 ? static_cast<float>(sum / static_cast<double>(count)) : 0.0f;
}

const float* Transformer::token_losses() const {
  require_host("token_losses");
  if (!acts_) fail<Error>("Transformer::token_losses: no forward pass has run yet");
  return static_cast<const float*>(acts_.data()) + off_losses_;
}

k::TensorView Transformer::token_losses_view() const {
  if (!acts_) fail<Error>("Transformer::token_losses_view: no forward pass has run yet");
  return act_view(off_losses_, {B_ * T_});
}

const float* Transformer::logits() const {
  require_host("logits");
  if (!acts_) fail<Error>("Transformer::logits: no forward pass has run yet");
  return static_cast<const float*>(acts_.data()) + off_logits_;
}

// ---- backward ---------------------------------------------------------------------------

index_t Transformer::backward_scratch_floats(index_t B, index_t T) const {
  const index_t N = B * T, HD = cfg_.n_head * cfg_.head_dim;
  const index_t wide = std::max({in_cols_, qkv_rows_, HD, cfg_.n_ff});
  const index_t cap = cfg_.final_softcap > 0 ? 2 * N * cfg_.vocab_size : 0;
  return 3 * N * cfg_.n_embd + 2 * N * wide + B * cfg_.n_head * T * T + cap;
}

std::size_t Transformer::backward_scratch_bytes(index_t B, index_t T) const {
  return static_cast<std::size_t>(backward_scratch_floats(B, T)) * sizeof(float);
}

void Transformer::backward(const float* dlosses) {
  if (!have_forward_ || !last_training_ || !last_has_targets_)
    fail<Error>(
        "Transformer::backward needs a preceding training-mode forward with targets (and one backward per "
        "forward: backward consumes the logits)");
  const index_t B = B_, T = T_, N = B * T, C = cfg_.n_embd, V = cfg_.vocab_size, NL = cfg_.n_layer;
  const index_t HD = cfg_.n_head * cfg_.head_dim, F = cfg_.n_ff;
  if (!grads_ && !lora_) grads_ = backend_->alloc(k::DType::f32, {num_params_});
  have_forward_ = false;  // the logits buffer becomes dlogits below

  // Per-token loss gradients: given, or those of the mean over counted tokens.
  std::vector<float> dl(static_cast<std::size_t>(N));
  if (dlosses) {
    std::copy(dlosses, dlosses + N, dl.begin());
  } else {
    std::vector<float> m(static_cast<std::size_t>(N), 1.0f);
    if (last_has_mask_)
      backend_->copy_out(m.data(), m.size() * sizeof(float),
                         TensorView{mask_.data(), k::DType::f32, {N}, backend_->device()});
    const float w = last_count_ > 0 ? 1.0f / static_cast<float>(last_count_) : 0.0f;
    for (index_t i = 0; i < N; ++i)
      dl[static_cast<std::size_t>(i)] = m[static_cast<std::size_t>(i)] != 0.0f ? w : 0.0f;
  }
  if (!dlosses_ || dlosses_.view().numel() < N) dlosses_ = backend_->alloc(k::DType::f32, {N});
  const TensorView dlv{dlosses_.data(), k::DType::f32, {N}, backend_->device()};
  backend_->copy_in(dlv, dl.data(), dl.size() * sizeof(float));
  const TensorView tgt{targets_.data(), k::DType::i32, {N}, backend_->device()};
  TensorView tok{tokens_.data(), k::DType::i32, {B, T}, backend_->device()};

  // Activation gradients: dres, dbtc, dpost [N,C]; dA, dB [N, wide]; datt [B,NH,T,T]; with a final
  // soft-cap two [N,V] buffers (the capped logits must survive the cross-entropy backward).
  const index_t nc = N * C, wide = std::max({in_cols_, qkv_rows_, HD, F}), att = B * cfg_.n_head * T * T;
  const index_t need = backward_scratch_floats(B, T);
  if (need > scratch_size_) {
    scratch_.reset();
    scratch_ = backend_->alloc(k::DType::f32, {need});
    scratch_size_ = need;
  }
  float* s = static_cast<float*>(scratch_.data());
  auto sview = [&](index_t off, Shape shape) {
    return TensorView{s + off, k::DType::f32, std::move(shape), backend_->device()};
  };
  const TensorView dres = sview(0, {N, C}), dbtc = sview(nc, {N, C}), dpost = sview(2 * nc, {N, C});
  auto dA = [&](index_t cols) { return sview(3 * nc, {N, cols}); };
  auto dB = [&](index_t cols) { return sview(3 * nc + N * wide, {N, cols}); };
  const TensorView datt = sview(3 * nc + 2 * N * wide, {B, cfg_.n_head, T, T});

  const TensorView logits = act_view(off_logits_, {N, V});
  TensorView dlogits = logits;
  if (cfg_.final_softcap > 0) {
    const TensorView dcap = sview(3 * nc + 2 * N * wide + att, {N, V});
    dlogits = sview(3 * nc + 2 * N * wide + att + N * V, {N, V});
    backend_->crossentropy_backward(dcap, logits, tgt, dlv);
    backend_->zero(dlogits);
    backend_->softcap_backward(dlogits, logits, dcap, static_cast<float>(cfg_.final_softcap));
  } else {
    backend_->crossentropy_backward(logits, logits, tgt, dlv);
  }
  const TensorView hf = act_view(off_hf_, {N, C});
  backend_->zero(dbtc);
  backend_->matmul_backward(dbtc, lora_ ? absent() : gview(head_), absent(), dlogits, hf, pview(head_),
                            k::WeightLayout::linear);
  backend_->zero(dres);
  norm_backward(dres, dbtc, layer_acts(NL - 1).x_out, act_view(off_hf_mean_, {N}),
                act_view(off_hf_rstd_, {N}), final_norm_w_, final_norm_b_);

  const Shape qkv_w = layout_ == k::WeightLayout::conv1d ? Shape{C, qkv_rows_} : Shape{qkv_rows_, C};
  const Shape in_w = layout_ == k::WeightLayout::conv1d ? Shape{C, in_cols_} : Shape{in_cols_, C};
  for (index_t l = NL - 1; l >= 0; --l) {
    const LayerActs a = layer_acts(l);
    const LayerTensors& W = layers_[static_cast<std::size_t>(l)];
    const TensorView x = residual_in(l);
    // MLP: x_out = r + post(down(act(in(norm(r))))); dres is d(x_out), the skip's gradient.
    TensorView dmo = dres;
    if (cfg_.post_norms) {
      backend_->zero(dpost);
      norm_backward(dpost, dres, a.mo, absent(), a.mo_rstd, W.mlp_post, -1);
      dmo = dpost;
    }
    backend_->zero(dA(F));
    projection_backward(dA(F), W.down_w, table_[W.down_w].shape, W.down_b, {C}, dmo, a.act);
    backend_->zero(dB(in_cols_));
    if (cfg_.mlp == "gelu")
      backend_->gelu_backward(dB(in_cols_), a.fc, dA(F));
    else
      backend_->glu_backward(dB(in_cols_), a.fc, dA(F),
                             cfg_.mlp == "swiglu" ? k::GluKind::swiglu : k::GluKind::geglu);
    backend_->zero(dbtc);
    projection_backward(dbtc, W.in_w, in_w, W.in_b, {in_cols_}, dB(in_cols_), a.h2);
    // Accumulating into dres adds the branch gradient to the skip connection's.
    norm_backward(dres, dbtc, a.r, a.n2_mean, a.n2_rstd, W.mlp_norm_w, W.mlp_norm_b);
    // Attention: r = x + post(out(attn(rope(qkv(norm(x)))))).
    TensorView dao = dres;
    if (cfg_.post_norms) {
      backend_->zero(dpost);
      norm_backward(dpost, dres, a.ao, absent(), a.ao_rstd, W.attn_post, -1);
      dao = dpost;
    }
    backend_->zero(dA(HD));
    TensorView daty = dA(HD);
    daty.shape = {B, T, HD};
    projection_backward(daty, W.out_w, table_[W.out_w].shape, W.out_b, {C}, dao, a.att_y);
    TensorView dqkv = dB(qkv_rows_);
    dqkv.shape = {B, T, qkv_rows_};
    backend_->zero(dqkv);
    backend_->attention_backward(dqkv, datt, daty, a.qkv, a.att, attention_params(l, B, T));
    if (cfg_.pos == "rope") backend_->rope_backward(dqkv, rope_params(B, T));
    backend_->zero(dbtc);
    projection_backward(dbtc, W.qkv_w, qkv_w, W.qkv_b, {qkv_rows_}, dqkv, a.h1);
    norm_backward(dres, dbtc, x, a.n1_mean, a.n1_rstd, W.attn_norm_w, W.attn_norm_b);
  }
  if (lora_) return;  // the embeddings are frozen
  TensorView dx0 = dres;
  dx0.shape = {B, T, C};
  backend_->embedding_backward(gview(tok_embed_), pos_embed_ >= 0 ? gview(pos_embed_) : absent(), dx0, tok,
                               static_cast<float>(cfg_.embed_scale));
}

}  // namespace flowlm::model
