#include "model/tensors.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "core/error.hpp"

namespace flowlm::model {

namespace {
bool gpt2_names(const ModelConfig& c) { return c.arch == "gpt2"; }
bool gated(const ModelConfig& c) { return c.mlp != "gelu"; }
}  // namespace

ModelConfig gpt2_config(std::int64_t n_layer, std::int64_t n_head, std::int64_t n_embd,
                        std::int64_t vocab_size, std::int64_t block_size) {
  ModelConfig c;
  c.n_layer = n_layer;
  c.n_head = n_head;
  c.n_embd = n_embd;
  c.vocab_size = vocab_size;
  c.block_size = block_size;
  return c;
}

std::vector<ParamSpec> make_param_table(const ModelConfig& in) {
  const ModelConfig c = config::resolve_model(in);
  const index_t C = c.n_embd, H = c.n_head, K = c.n_kv_head, d = c.head_dim, F = c.n_ff, V = c.vocab_size;
  std::vector<ParamSpec> t;
  index_t offset = 0;
  auto add = [&](std::string name, Shape shape, Role role, std::int64_t layer, Init init) {
    ParamSpec p;
    p.numel = shape_numel(shape);
    p.name = std::move(name);
    p.shape = std::move(shape);
    p.offset = offset;
    p.role = role;
    p.layer = layer;
    p.is_bias = p.name.size() > 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0;
    p.is_embedding = role == Role::tok_embed || role == Role::pos_embed;
    p.is_matrix = p.shape.size() == 2 && !p.is_embedding;
    p.init = init;
    offset += p.numel;
    t.push_back(std::move(p));
  };
  // Norm weights start at 1 (x * w) or 0 (x * (1 + w)); biases at 0.
  const Init norm_init = c.norm == "rmsnorm_plus_one" ? Init::zeros : Init::ones;
  const bool norm_bias = c.norm == "layernorm" && c.biases == "all";
  const bool linear_bias = c.biases == "all", qkv_bias = c.biases == "all" || c.biases == "qkv";

  if (gpt2_names(c)) {
    add("transformer.wte.weight", {V, C}, Role::tok_embed, -1, Init::normal);
    if (c.pos == "learned")
      add("transformer.wpe.weight", {c.block_size, C}, Role::pos_embed, -1, Init::normal);
    for (std::int64_t l = 0; l < c.n_layer; ++l) {
      const std::string p = fmt::format("transformer.h.{}.", l);
      add(p + "ln_1.weight", {C}, Role::attn_norm, l, norm_init);
      if (norm_bias) add(p + "ln_1.bias", {C}, Role::attn_norm, l, Init::zeros);
      add(p + "attn.c_attn.weight", {C, (H + 2 * K) * d}, Role::qkv, l, Init::normal);
      if (qkv_bias) add(p + "attn.c_attn.bias", {(H + 2 * K) * d}, Role::qkv, l, Init::zeros);
      add(p + "attn.c_proj.weight", {H * d, C}, Role::attn_out, l, Init::normal_scaled);
      if (linear_bias) add(p + "attn.c_proj.bias", {C}, Role::attn_out, l, Init::zeros);
      add(p + "ln_2.weight", {C}, Role::mlp_norm, l, norm_init);
      if (norm_bias) add(p + "ln_2.bias", {C}, Role::mlp_norm, l, Init::zeros);
      add(p + "mlp.c_fc.weight", {C, F}, Role::mlp_in, l, Init::normal);
      if (linear_bias) add(p + "mlp.c_fc.bias", {F}, Role::mlp_in, l, Init::zeros);
      add(p + "mlp.c_proj.weight", {F, C}, Role::mlp_out, l, Init::normal_scaled);
      if (linear_bias) add(p + "mlp.c_proj.bias", {C}, Role::mlp_out, l, Init::zeros);
    }
    add("transformer.ln_f.weight", {C}, Role::final_norm, -1, norm_init);
    if (norm_bias) add("transformer.ln_f.bias", {C}, Role::final_norm, -1, Init::zeros);
    if (!c.tie_embeddings) add("lm_head.weight", {V, C}, Role::lm_head, -1, Init::normal);
    return t;
  }
  // Llama / Gemma-2 names (Linear layout [out, in]).
  add("model.embed_tokens.weight", {V, C}, Role::tok_embed, -1, Init::normal);
  for (std::int64_t l = 0; l < c.n_layer; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", {C}, Role::attn_norm, l, norm_init);
    if (norm_bias) add(p + "input_layernorm.bias", {C}, Role::attn_norm, l, Init::zeros);
    // q, k, v adjacent: one [(H + 2K) d, C] matrix for the fused projection.
    add(p + "self_attn.q_proj.weight", {H * d, C}, Role::qkv, l, Init::normal);
    add(p + "self_attn.k_proj.weight", {K * d, C}, Role::qkv, l, Init::normal);
    add(p + "self_attn.v_proj.weight", {K * d, C}, Role::qkv, l, Init::normal);
    if (qkv_bias) {
      add(p + "self_attn.q_proj.bias", {H * d}, Role::qkv, l, Init::zeros);
      add(p + "self_attn.k_proj.bias", {K * d}, Role::qkv, l, Init::zeros);
      add(p + "self_attn.v_proj.bias", {K * d}, Role::qkv, l, Init::zeros);
    }
    add(p + "self_attn.o_proj.weight", {C, H * d}, Role::attn_out, l, Init::normal_scaled);
    if (linear_bias) add(p + "self_attn.o_proj.bias", {C}, Role::attn_out, l, Init::zeros);
    if (c.post_norms) {
      // Gemma-2: post_attention_layernorm normalises the attention output; the pre-MLP norm is
      // pre_feedforward_layernorm. In Llama post_attention_layernorm IS the pre-MLP norm.
      add(p + "post_attention_layernorm.weight", {C}, Role::attn_post, l, norm_init);
      add(p + "pre_feedforward_layernorm.weight", {C}, Role::mlp_norm, l, norm_init);
    } else if (c.arch == "gemma2") {
      add(p + "pre_feedforward_layernorm.weight", {C}, Role::mlp_norm, l, norm_init);
    } else {
      add(p + "post_attention_layernorm.weight", {C}, Role::mlp_norm, l, norm_init);
      if (norm_bias) add(p + "post_attention_layernorm.bias", {C}, Role::mlp_norm, l, Init::zeros);
    }
    if (gated(c)) {
      // gate, up adjacent: one [2F, C] matrix whose output is the packed [gate | up].
      add(p + "mlp.gate_proj.weight", {F, C}, Role::mlp_in, l, Init::normal);
      add(p + "mlp.up_proj.weight", {F, C}, Role::mlp_in, l, Init::normal);
    } else {
      add(p + "mlp.up_proj.weight", {F, C}, Role::mlp_in, l, Init::normal);
      if (linear_bias) add(p + "mlp.up_proj.bias", {F}, Role::mlp_in, l, Init::zeros);
    }
    add(p + "mlp.down_proj.weight", {C, F}, Role::mlp_out, l, Init::normal_scaled);
    if (linear_bias) add(p + "mlp.down_proj.bias", {C}, Role::mlp_out, l, Init::zeros);
    if (c.post_norms) add(p + "post_feedforward_layernorm.weight", {C}, Role::mlp_post, l, norm_init);
  }
  add("model.norm.weight", {C}, Role::final_norm, -1, norm_init);
  if (norm_bias) add("model.norm.bias", {C}, Role::final_norm, -1, Init::zeros);
  if (!c.tie_embeddings) add("lm_head.weight", {V, C}, Role::lm_head, -1, Init::normal);
  return t;
}

index_t count_params(const ModelConfig& cfg) {
  const auto t = make_param_table(cfg);
  return t.back().offset + t.back().numel;
}

std::int64_t param_block(const std::string& name, std::string* rest) {
  for (const std::string prefix : {"transformer.h.", "model.layers."}) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const auto dot = name.find('.', prefix.size());
    if (dot == std::string::npos || dot == prefix.size()) return -1;
    const std::string digits = name.substr(prefix.size(), dot - prefix.size());
    if (!std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) return -1;
    if (rest) *rest = name.substr(dot + 1);
    return std::stoll(digits);
  }
  return -1;
}

std::string rename_block(const std::string& name, std::int64_t to) {
  std::string rest;
  if (param_block(name, &rest) < 0) fail<Error>("'{}' is not a tensor of a transformer block", name);
  const char* prefix = name.compare(0, 14, "transformer.h.") == 0 ? "transformer.h." : "model.layers.";
  return fmt::format("{}{}.{}", prefix, to, rest);
}

}  // namespace flowlm::model
