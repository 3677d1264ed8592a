#include "model/gpt.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::model {

namespace k = flowlm::kernels;

namespace {

// Block tensors in flat-buffer order (index k of block_tensor).
enum BlockTensor : index_t {
  kLn1W,
  kLn1B,
  kQkvW,
  kQkvB,
  kAttProjW,
  kAttProjB,
  kLn2W,
  kLn2B,
  kFcW,
  kFcB,
  kFcProjW,
  kFcProjB,
  kPerBlock
};

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

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

void validate(const GPTConfig& cfg) {
  const std::pair<const char*, std::int64_t> fields[] = {{"n_layer", cfg.n_layer},
                                                         {"n_head", cfg.n_head},
                                                         {"n_embd", cfg.n_embd},
                                                         {"vocab_size", cfg.vocab_size},
                                                         {"block_size", cfg.block_size}};
  for (const auto& [key, value] : fields) {
    if (value < 1) fail<ConfigError>("model.{} = {}: must be a positive integer", key, value);
  }
  if (cfg.n_embd % cfg.n_head != 0) {
    fail<ConfigError>(
        "model.n_embd = {} is not a multiple of model.n_head = {}; choose n_embd = n_head * head_size",
        cfg.n_embd, cfg.n_head);
  }
}

std::int64_t param_block(const std::string& name, std::string* rest) {
  const std::string prefix = "transformer.h.";
  if (name.compare(0, prefix.size(), prefix) != 0) return -1;
  const auto dot = name.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size()) return -1;
  const std::string digits = name.substr(prefix.size(), dot - prefix.size());
  if (!std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) return -1;
  if (rest) *rest = name.substr(dot + 1);
  return std::stoll(digits);
}

std::vector<ParamSpec> make_param_table(const GPTConfig& cfg) {
  validate(cfg);
  const index_t C = cfg.n_embd;
  std::vector<ParamSpec> t;
  index_t offset = 0;
  auto add = [&](std::string name, Shape shape, bool is_matrix, bool is_embedding) {
    const index_t n = shape_numel(shape);
    t.push_back(ParamSpec{std::move(name), std::move(shape), offset, n, is_matrix, is_embedding});
    offset += n;
  };
  add("transformer.wte.weight", {cfg.vocab_size, C}, false, true);
  add("transformer.wpe.weight", {cfg.block_size, C}, false, true);
  for (index_t l = 0; l < cfg.n_layer; ++l) {
    const std::string p = fmt::format("transformer.h.{}.", l);
    add(p + "ln_1.weight", {C}, false, false);
    add(p + "ln_1.bias", {C}, false, false);
    add(p + "attn.c_attn.weight", {C, 3 * C}, true, false);
    add(p + "attn.c_attn.bias", {3 * C}, false, false);
    add(p + "attn.c_proj.weight", {C, C}, true, false);
    add(p + "attn.c_proj.bias", {C}, false, false);
    add(p + "ln_2.weight", {C}, false, false);
    add(p + "ln_2.bias", {C}, false, false);
    add(p + "mlp.c_fc.weight", {C, 4 * C}, true, false);
    add(p + "mlp.c_fc.bias", {4 * C}, false, false);
    add(p + "mlp.c_proj.weight", {4 * C, C}, true, false);
    add(p + "mlp.c_proj.bias", {C}, false, false);
  }
  add("transformer.ln_f.weight", {C}, false, false);
  add("transformer.ln_f.bias", {C}, false, false);
  return t;
}

index_t count_params(const GPTConfig& cfg) {
  const auto t = make_param_table(cfg);
  return t.back().offset + t.back().numel;
}

GPT::GPT(const GPTConfig& cfg) : cfg_(cfg), table_(make_param_table(cfg)) {
  for (std::size_t i = 0; i < table_.size(); ++i) index_.emplace(table_[i].name, i);
  num_params_ = table_.back().offset + table_.back().numel;
  params_.assign(static_cast<std::size_t>(num_params_), 0.0f);
}

float* GPT::grads() {
  if (grads_.empty()) grads_.assign(static_cast<std::size_t>(num_params_), 0.0f);
  return grads_.data();
}

void GPT::zero_grad() {
  if (grads_.empty()) {
    grads();
  } else {
    std::fill(grads_.begin(), grads_.end(), 0.0f);
  }
}

const ParamSpec& GPT::param_spec(const std::string& hf_name) const {
  const auto it = index_.find(hf_name);
  if (it == index_.end()) {
    fail<Error>(
        "GPT-2 model (n_layer = {}) has no parameter named '{}'; names follow Hugging Face, e.g. "
        "'transformer.h.0.attn.c_attn.weight'",
        cfg_.n_layer, hf_name);
  }
  return table_[it->second];
}

float* GPT::param(const std::string& hf_name) { return params_.data() + param_spec(hf_name).offset; }
const float* GPT::param(const std::string& hf_name) const {
  return params_.data() + param_spec(hf_name).offset;
}

void GPT::init_random(std::uint64_t seed) {
  const double proj_std = 0.02 / std::sqrt(2.0 * static_cast<double>(cfg_.n_layer));
  for (const auto& p : table_) {
    float* x = params_.data() + p.offset;
    const bool is_bias = p.name.size() >= 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
    const bool is_ln = p.name.find(".ln_") != std::string::npos;
    if (is_ln && !is_bias) {
      std::fill(x, x + p.numel, 1.0f);
    } else if (is_bias) {
      std::fill(x, x + p.numel, 0.0f);
    } else {
      const bool is_proj = p.name.find("c_proj.weight") != std::string::npos;
      std::uint64_t s = seed ^ fnv1a(p.name);
      fill_normal(x, p.numel, is_proj ? proj_std : 0.02, splitmix64(s));
    }
  }
}

void GPT::layout_activations(index_t B, index_t T, bool training) {
  const index_t C = cfg_.n_embd, N = B * T, NH = cfg_.n_head, V = cfg_.vocab_size;
  Layout& L = lay_;
  index_t off = 0;
  auto take = [&](index_t n) {
    const index_t o = off;
    off += n;
    return o;
  };
  // Within one layer's block.
  index_t w = 0;
  auto take_w = [&](index_t n) {
    const index_t o = w;
    w += n;
    return o;
  };
  L.ln1 = take_w(N * C);
  L.ln1_mean = take_w(N);
  L.ln1_rstd = take_w(N);
  L.qkv = take_w(3 * N * C);
  L.atty = take_w(N * C);
  L.att = take_w(B * NH * T * T);
  L.attproj = take_w(N * C);
  L.residual2 = take_w(N * C);
  L.ln2 = take_w(N * C);
  L.ln2_mean = take_w(N);
  L.ln2_rstd = take_w(N);
  L.fch = take_w(4 * N * C);
  L.fch_gelu = take_w(4 * N * C);
  L.fcproj = take_w(N * C);
  L.residual3 = take_w(N * C);
  L.layer_stride = w;

  L.encoded = take(N * C);
  L.layers = take(L.layer_stride * (training ? cfg_.n_layer : 1));
  L.lnf = take(N * C);
  L.lnf_mean = take(N);
  L.lnf_rstd = take(N);
  L.logits = take(N * V);
  L.losses = take(N);
  L.total = off;
  if (static_cast<index_t>(acts_.size()) < L.total) {
    acts_.clear();  // no copy of stale contents on growth
    acts_.resize(static_cast<std::size_t>(L.total));
  }
  B_ = B;
  T_ = T;
  last_training_ = training;
}

GPT::LayerActs GPT::layer_acts(index_t l) {
  const Layout& L = lay_;
  float* base = acts_.data() + L.layers + (last_training_ ? l : 0) * L.layer_stride;
  LayerActs a{};
  a.ln1 = base + L.ln1;
  a.ln1_mean = base + L.ln1_mean;
  a.ln1_rstd = base + L.ln1_rstd;
  a.qkv = base + L.qkv;
  a.atty = base + L.atty;
  a.att = base + L.att;
  a.attproj = base + L.attproj;
  a.ln2 = base + L.ln2;
  a.ln2_mean = base + L.ln2_mean;
  a.ln2_rstd = base + L.ln2_rstd;
  a.fch = base + L.fch;
  a.fch_gelu = base + L.fch_gelu;
  a.fcproj = base + L.fcproj;
  if (last_training_) {
    a.residual2 = base + L.residual2;
    a.residual3 = base + L.residual3;
  } else {
    // Inference: the residual stream is updated in place in `encoded`.
    a.residual2 = acts_.data() + L.encoded;
    a.residual3 = acts_.data() + L.encoded;
  }
  return a;
}

float* GPT::residual_in(index_t l) {
  if (l == 0 || !last_training_) return acts_.data() + lay_.encoded;
  return layer_acts(l - 1).residual3;
}

float GPT::forward(const std::int32_t* tokens, const std::int32_t* targets, const float* mask, index_t B,
                   index_t T, bool training) {
  const index_t C = cfg_.n_embd, NH = cfg_.n_head, V = cfg_.vocab_size, NL = cfg_.n_layer;
  if (B < 1 || T < 1 || T > cfg_.block_size) {
    fail<DataError>("GPT forward: batch {} x {} tokens; need B >= 1 and 1 <= T <= block_size = {}", B, T,
                    cfg_.block_size);
  }
  if (tokens == nullptr) fail<Error>("GPT forward: tokens must not be null");
  const index_t N = B * T;
  for (index_t i = 0; i < N; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V) {
      fail<DataError>(
          "GPT forward: token {} at position {} (row {}) is outside [0, {}); the data's tokenizer does "
          "not match the model's vocab_size",
          tokens[i], i % T, i / T, V);
    }
  }
  have_forward_ = false;
  layout_activations(B, T, training);
  last_has_targets_ = targets != nullptr;
  if (training) {
    tokens_.assign(tokens, tokens + N);
    if (targets) targets_.assign(targets, targets + N);
    if (mask) {
      mask_.assign(mask, mask + N);
    } else {
      mask_.clear();
    }
  }

  float* encoded = acts_.data() + lay_.encoded;
  k::encoder_forward(encoded, tokens, pw(0), pw(1), B, T, C);
  for (index_t l = 0; l < NL; ++l) {
    const LayerActs a = layer_acts(l);
    const float* res = residual_in(l);
    auto p = [&](index_t kk) { return pw(block_tensor(l, kk)); };
    k::layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, res, p(kLn1W), p(kLn1B), N, C);
    k::matmul_forward(a.qkv, a.ln1, p(kQkvW), p(kQkvB), N, C, 3 * C);
    k::attention_forward(a.atty, a.att, a.qkv, B, T, C, NH);
    k::matmul_forward(a.attproj, a.atty, p(kAttProjW), p(kAttProjB), N, C, C);
    k::residual_forward(a.residual2, res, a.attproj, N * C);
    k::layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.residual2, p(kLn2W), p(kLn2B), N, C);
    k::matmul_forward(a.fch, a.ln2, p(kFcW), p(kFcB), N, C, 4 * C);
    k::gelu_forward(a.fch_gelu, a.fch, 4 * N * C);
    k::matmul_forward(a.fcproj, a.fch_gelu, p(kFcProjW), p(kFcProjB), N, 4 * C, C);
    k::residual_forward(a.residual3, a.residual2, a.fcproj, N * C);
  }
  const float* final_res = layer_acts(NL - 1).residual3;
  const index_t lnf = block_tensor(NL, 0);
  float* lnf_out = acts_.data() + lay_.lnf;
  k::layernorm_forward(lnf_out, acts_.data() + lay_.lnf_mean, acts_.data() + lay_.lnf_rstd, final_res,
                       pw(lnf), pw(lnf + 1), N, C);
  float* logits_out = acts_.data() + lay_.logits;
  k::lm_head_forward(logits_out, lnf_out, pw(0), N, C, V);

  float* losses = acts_.data() + lay_.losses;
  have_forward_ = true;
  if (!targets) {
    std::fill(losses, losses + N, 0.0f);
    last_count_ = 0;
    return 0.0f;
  }
  k::crossentropy_forward(losses, logits_out, targets, mask, N, V);
  double sum = 0.0;
  index_t count = 0;
  for (index_t i = 0; i < N; ++i) {
    if (mask && mask[i] == 0.0f) continue;
    sum += losses[i];
    ++count;
  }
  last_count_ = count;
  return count > 0 ? static_cast<float>(sum / static_cast<double>(count)) : 0.0f;
}

const float* GPT::token_losses() const {
  if (acts_.empty()) fail<Error>("GPT::token_losses: no forward pass has run yet");
  return acts_.data() + lay_.losses;
}

const float* GPT::logits() const {
  if (acts_.empty()) fail<Error>("GPT::logits: no forward pass has run yet");
  return acts_.data() + lay_.logits;
}

void GPT::backward(const float* dlosses) { backward(nullptr, nullptr, dlosses); }

void GPT::backward(const std::int32_t* tokens, const std::int32_t* targets, const float* dlosses) {
  if (!have_forward_ || !last_training_ || !last_has_targets_) {
    fail<Error>(
        "GPT::backward needs a preceding training-mode forward with targets (and one backward per "
        "forward: backward consumes the logits)");
  }
  const index_t B = B_, T = T_, N = B * T, C = cfg_.n_embd, NH = cfg_.n_head, V = cfg_.vocab_size,
                NL = cfg_.n_layer;
  grads();
  have_forward_ = false;  // the logits buffer becomes dlogits below

  std::vector<float> dmean;
  if (dlosses == nullptr) {
    // Gradient of the mean over counted tokens.
    const float w = last_count_ > 0 ? 1.0f / static_cast<float>(last_count_) : 0.0f;
    dmean.assign(static_cast<std::size_t>(N), w);
    if (!mask_.empty()) {
      for (index_t i = 0; i < N; ++i) {
        if (mask_[i] == 0.0f) dmean[i] = 0.0f;
      }
    }
    dlosses = dmean.data();
  }

  // Activation gradients: dres [N,C] (residual stream), dbtc [N,C], dA/dB [N,4C], datt [B,NH,T,T].
  const index_t nc = N * C;
  const index_t scratch = 10 * nc + B * NH * T * T;
  if (static_cast<index_t>(grad_scratch_.size()) < scratch) {
    grad_scratch_.clear();
    grad_scratch_.resize(static_cast<std::size_t>(scratch));
  }
  float* dres = grad_scratch_.data();
  float* dbtc = dres + nc;
  float* dA = dbtc + nc;
  float* dB = dA + 4 * nc;
  float* datt = dB + 4 * nc;
  auto zero = [](float* x, index_t n) { std::fill(x, x + n, 0.0f); };

  float* dlogits = acts_.data() + lay_.logits;
  k::crossentropy_backward(dlogits, dlogits, targets ? targets : targets_.data(), dlosses, N, V);
  const float* lnf_out = acts_.data() + lay_.lnf;
  zero(dbtc, nc);
  k::lm_head_backward(dbtc, gw(0), dlogits, lnf_out, pw(0), N, C, V);
  const index_t lnf = block_tensor(NL, 0);
  zero(dres, nc);
  k::layernorm_backward(dres, gw(lnf), gw(lnf + 1), dbtc, layer_acts(NL - 1).residual3, pw(lnf),
                        acts_.data() + lay_.lnf_mean, acts_.data() + lay_.lnf_rstd, N, C);

  for (index_t l = NL - 1; l >= 0; --l) {
    const LayerActs a = layer_acts(l);
    const float* res = residual_in(l);
    auto p = [&](index_t kk) { return pw(block_tensor(l, kk)); };
    auto g = [&](index_t kk) { return gw(block_tensor(l, kk)); };
    // MLP: residual3 = residual2 + fc_proj(gelu(fc(ln_2(residual2)))).
    zero(dA, 4 * nc);
    k::matmul_backward(dA, g(kFcProjW), g(kFcProjB), dres, a.fch_gelu, p(kFcProjW), N, 4 * C, C);
    zero(dB, 4 * nc);
    k::gelu_backward(dB, a.fch, dA, 4 * nc);
    zero(dbtc, nc);
    k::matmul_backward(dbtc, g(kFcW), g(kFcB), dB, a.ln2, p(kFcW), N, C, 4 * C);
    // Accumulating into dres adds the branch gradient to the skip connection's.
    k::layernorm_backward(dres, g(kLn2W), g(kLn2B), dbtc, a.residual2, p(kLn2W), a.ln2_mean, a.ln2_rstd, N,
                          C);
    // Attention: residual2 = res + c_proj(attn(c_attn(ln_1(res)))).
    zero(dbtc, nc);
    k::matmul_backward(dbtc, g(kAttProjW), g(kAttProjB), dres, a.atty, p(kAttProjW), N, C, C);
    zero(dA, 3 * nc);
    k::attention_backward(dA, datt, dbtc, a.qkv, a.att, B, T, C, NH);
    zero(dbtc, nc);
    k::matmul_backward(dbtc, g(kQkvW), g(kQkvB), dA, a.ln1, p(kQkvW), N, C, 3 * C);
    k::layernorm_backward(dres, g(kLn1W), g(kLn1B), dbtc, res, p(kLn1W), a.ln1_mean, a.ln1_rstd, N, C);
  }
  k::encoder_backward(gw(0), gw(1), dres, tokens ? tokens : tokens_.data(), B, T, C);
}

}  // namespace flowlm::model
