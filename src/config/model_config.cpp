#include "config/model_config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace flowlm::config {

namespace {

bool given_key(const std::vector<std::string>& given, const char* key) {
  return std::find(given.begin(), given.end(), key) != given.end();
}

void check_choice(const char* key, const std::string& value, std::initializer_list<const char*> choices) {
  for (const char* c : choices)
    if (value == c) return;
  std::string list;
  for (const char* c : choices) list += (list.empty() ? "" : ", ") + std::string(c);
  fail<ConfigError>("model.{} = \"{}\" is not one of: {}", key, value, list);
}

/// The kMaxModel* bounds, before any arithmetic on the sizes (a checkpoint's /model attributes
/// reach resolve_model without the job schema's range checks).
void check_size_limits(const ModelConfig& c) {
  const std::pair<const char*, std::pair<std::int64_t, std::int64_t>> sizes[] = {
      {"n_layer", {c.n_layer, kMaxModelLayers}},
      {"n_head", {c.n_head, kMaxModelHeads}},
      {"n_kv_head", {c.n_kv_head, kMaxModelHeads}},
      {"head_dim", {c.head_dim, kMaxModelWidth}},
      {"n_embd", {c.n_embd, kMaxModelWidth}},
      {"n_ff", {c.n_ff, kMaxModelFF}},
      {"vocab_size", {c.vocab_size, kMaxModelVocab}},
      {"block_size", {c.block_size, kMaxModelBlock}},
      {"sliding_window", {c.sliding_window, kMaxModelBlock}}};
  for (const auto& [key, vm] : sizes)
    if (vm.first > vm.second)
      fail<ConfigError>("model.{} = {} is too large (at most {})", key, vm.first, vm.second);
}

bool gpt2_names(const ModelConfig& c) { return c.arch == "gpt2"; }
bool gated(const ModelConfig& c) { return c.mlp != "gelu"; }

}  // namespace

bool ModelConfig::same_architecture(const ModelConfig& o) const {
  return arch == o.arch && n_layer == o.n_layer && n_head == o.n_head && n_kv_head == o.n_kv_head &&
         head_dim == o.head_dim && n_embd == o.n_embd && n_ff == o.n_ff && vocab_size == o.vocab_size &&
         block_size == o.block_size && norm == o.norm && norm_eps == o.norm_eps && pos == o.pos &&
         rope_theta == o.rope_theta && mlp == o.mlp && biases == o.biases &&
         tie_embeddings == o.tie_embeddings && post_norms == o.post_norms && embed_scale == o.embed_scale &&
         attn_softcap == o.attn_softcap && final_softcap == o.final_softcap &&
         sliding_window == o.sliding_window && sliding_window_layers == o.sliding_window_layers &&
         query_scale == o.query_scale;
}

const std::vector<std::string>& model_archs() {
  static const std::vector<std::string> archs = {"gpt2", "llama", "gemma2"};
  return archs;
}

ModelConfig with_family_defaults(ModelConfig cfg, const std::vector<std::string>& given) {
  ModelConfig d;  // the GPT-2 defaults
  if (cfg.arch == "llama") {
    // Llama 2/3 (and Mistral, Qwen2 with their own keys): RMSNorm, RoPE, SwiGLU, no biases.
    d.norm = "rmsnorm";
    d.norm_eps = 1e-5;
    d.pos = "rope";
    d.rope_theta = 10000.0;
    d.mlp = "swiglu";
    d.biases = "none";
    d.tie_embeddings = false;
  } else if (cfg.arch == "gemma2") {
    // Gemma-2: x * (1 + w) norms before and after both sublayers, GeGLU, soft-caps, sqrt(C)
    // embedding scale, a sliding window on alternate layers, tied embeddings.
    d.norm = "rmsnorm_plus_one";
    d.norm_eps = 1e-6;
    d.pos = "rope";
    d.rope_theta = 10000.0;
    d.mlp = "geglu";
    d.biases = "none";
    d.tie_embeddings = true;
    d.post_norms = true;
    d.embed_scale = 0.0;
    d.attn_softcap = 50.0;
    d.final_softcap = 30.0;
    d.sliding_window = 4096;
    d.sliding_window_layers = "alternate";
  } else if (cfg.arch != "gpt2") {
    fail<ConfigError>("model.arch = \"{}\" is not one of: gpt2, llama, gemma2", cfg.arch);
  }
  auto fill = [&](const char* key, auto& field, const auto& value) {
    if (!given_key(given, key)) field = value;
  };
  fill("norm", cfg.norm, d.norm);
  fill("norm_eps", cfg.norm_eps, d.norm_eps);
  fill("pos", cfg.pos, d.pos);
  fill("rope_theta", cfg.rope_theta, d.rope_theta);
  fill("mlp", cfg.mlp, d.mlp);
  fill("biases", cfg.biases, d.biases);
  fill("tie_embeddings", cfg.tie_embeddings, d.tie_embeddings);
  fill("post_norms", cfg.post_norms, d.post_norms);
  fill("embed_scale", cfg.embed_scale, d.embed_scale);
  fill("attn_softcap", cfg.attn_softcap, d.attn_softcap);
  fill("final_softcap", cfg.final_softcap, d.final_softcap);
  fill("sliding_window", cfg.sliding_window, d.sliding_window);
  fill("sliding_window_layers", cfg.sliding_window_layers, d.sliding_window_layers);
  return cfg;
}

ModelConfig resolve_model(ModelConfig c) {
  check_size_limits(c);
  if (c.n_head >= 1) {
    if (c.n_kv_head == 0) c.n_kv_head = c.n_head;
    if (c.head_dim == 0 && c.n_embd % c.n_head != 0)
      fail<ConfigError>(
          "model.n_embd = {} is not a multiple of model.n_head = {}; choose n_embd = n_head * head_size (or "
          "set "
          "model.head_dim)",
          c.n_embd, c.n_head);
    if (c.head_dim == 0) c.head_dim = c.n_embd / c.n_head;
  }
  if (c.n_ff == 0) {
    if (c.arch == "llama") {
      // Meta's rule: 2/3 of 4 n_embd, rounded up to a multiple of 256.
      const std::int64_t h = 2 * 4 * c.n_embd / 3;
      c.n_ff = (h + 255) / 256 * 256;
    } else {
      c.n_ff = 4 * c.n_embd;
    }
  }
  if (c.embed_scale == 0.0) c.embed_scale = std::sqrt(static_cast<double>(c.n_embd));
  if (c.query_scale == 0.0 && c.head_dim > 0)
    c.query_scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  validate_model(c);
  return c;
}

void validate_model(const ModelConfig& c) {
  check_choice("arch", c.arch, {"gpt2", "llama", "gemma2"});
  check_size_limits(c);
  const std::pair<const char*, std::int64_t> sizes[] = {
      {"n_layer", c.n_layer},       {"n_head", c.n_head},        {"n_kv_head", c.n_kv_head},
      {"head_dim", c.head_dim},     {"n_embd", c.n_embd},        {"n_ff", c.n_ff},
      {"vocab_size", c.vocab_size}, {"block_size", c.block_size}};
  for (const auto& [key, value] : sizes)
    if (value < 1) fail<ConfigError>("model.{} = {}: must be a positive integer", key, value);
  if (c.n_head % c.n_kv_head != 0)
    fail<ConfigError>(
        "model.n_head = {} must be a multiple of model.n_kv_head = {} (grouped-query attention)", c.n_head,
        c.n_kv_head);
  if (gpt2_names(c) && c.n_head * c.head_dim != c.n_embd)
    fail<ConfigError>(
        "model.n_embd = {} is not model.n_head = {} x model.head_dim = {}; GPT-2 needs n_embd = n_head * "
        "head_dim",
        c.n_embd, c.n_head, c.head_dim);
  if (c.pos == "rope" && c.head_dim % 2 != 0)
    fail<ConfigError>("model.head_dim = {} must be even for rotary position embeddings", c.head_dim);
  check_choice("norm", c.norm, {"layernorm", "rmsnorm", "rmsnorm_plus_one"});
  check_choice("pos", c.pos, {"learned", "rope"});
  check_choice("mlp", c.mlp, {"gelu", "swiglu", "geglu"});
  check_choice("biases", c.biases, {"all", "none", "qkv"});
  check_choice("sliding_window_layers", c.sliding_window_layers, {"all", "alternate"});
  if (c.pos == "learned" && !gpt2_names(c))
    fail<ConfigError>(
        "model.pos = \"learned\" needs model.arch = \"gpt2\" (arch \"{}\" has no position embedding)",
        c.arch);
  if (gpt2_names(c) && gated(c))
    fail<ConfigError>(
        "model.mlp = \"{}\" needs model.arch = \"llama\" or \"gemma2\" (GPT-2's MLP has no gate)", c.mlp);
  if (gpt2_names(c) && c.post_norms)
    fail<ConfigError>("model.post_norms = true needs model.arch = \"gemma2\"");
  if (c.post_norms && c.arch != "gemma2")
    fail<ConfigError>(
        "model.post_norms = true needs model.arch = \"gemma2\" (its tensors hold the extra norms)");
  if (c.norm == "layernorm" && c.biases != "all")
    fail<ConfigError>(
        "model.norm = \"layernorm\" needs model.biases = \"all\" (flowlm's LayerNorm has a bias)");
  if (c.post_norms && c.norm == "layernorm")
    fail<ConfigError>(
        "model.post_norms = true needs an RMSNorm (model.norm = \"rmsnorm\" or \"rmsnorm_plus_one\")");
  if (c.biases == "all" && c.norm != "layernorm")
    fail<ConfigError>("model.biases = \"all\" needs model.norm = \"layernorm\" (RMSNorm has no bias)");
  if (c.biases == "qkv" && gpt2_names(c))
    fail<ConfigError>("model.biases = \"qkv\" needs model.arch = \"llama\" (Qwen2-style q/k/v biases)");
  for (const auto& [key, value] :
       {std::pair{"norm_eps", c.norm_eps}, std::pair{"rope_theta", c.rope_theta},
        std::pair{"embed_scale", c.embed_scale}, std::pair{"query_scale", c.query_scale}})
    if (!(value > 0) || !std::isfinite(value))
      fail<ConfigError>("model.{} = {}: must be a positive number", key, value);
  for (const auto& [key, value] :
       {std::pair{"attn_softcap", c.attn_softcap}, std::pair{"final_softcap", c.final_softcap}})
    if (!(value >= 0) || !std::isfinite(value))
      fail<ConfigError>("model.{} = {}: must be >= 0 (0 = no soft-cap)", key, value);
  if (c.sliding_window < 0)
    fail<ConfigError>("model.sliding_window = {}: must be >= 0 (0 = none)", c.sliding_window);
}

}  // namespace flowlm::config
