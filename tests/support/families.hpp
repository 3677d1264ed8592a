// The tiny model configs of each family that the model tests share (host vs reference, CUDA vs host).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "config/model_config.hpp"

namespace flowlm::testing {

/// A tiny config of each family, with the knobs that make the family distinct turned on.
inline std::map<std::string, config::ModelConfig> families() {
  std::map<std::string, config::ModelConfig> out;
  auto base = [](const std::string& arch, const std::vector<std::string>& given) {
    config::ModelConfig c;
    c.arch = arch;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_embd = 16;
    c.vocab_size = 37;
    c.block_size = 16;
    return config::with_family_defaults(c, given);
  };
  out["gpt2"] = base("gpt2", {});
  config::ModelConfig llama = base("llama", {});
  llama.n_kv_head = 2;
  llama.n_ff = 24;
  out["llama"] = llama;
  config::ModelConfig qwen2 = base("llama", {"biases", "tie_embeddings", "rope_theta"});
  qwen2.biases = "qkv";
  qwen2.tie_embeddings = true;
  qwen2.rope_theta = 1e6;
  qwen2.n_kv_head = 2;
  qwen2.n_ff = 24;
  out["qwen2"] = qwen2;
  config::ModelConfig mistral = base("llama", {"sliding_window"});
  mistral.sliding_window = 3;
  mistral.n_kv_head = 1;
  mistral.n_ff = 24;
  out["mistral"] = mistral;
  config::ModelConfig gemma = base("gemma2", {"attn_softcap", "final_softcap", "sliding_window"});
  gemma.n_kv_head = 2;
  gemma.head_dim = 8;  // != n_embd / n_head, as in Gemma-2
  gemma.n_ff = 32;
  gemma.sliding_window = 3;
  gemma.attn_softcap = 2.0;  // small caps so that they bite on a random model
  gemma.final_softcap = 1.5;
  out["gemma2"] = gemma;
  return out;
}

}  // namespace flowlm::testing
