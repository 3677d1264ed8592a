#include "model/hf.hpp"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <optional>
#include <set>

#include "config/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "io/checkpoint.hpp"
#include "io/json_text.hpp"
#include "model/checkpoint.hpp"
#include "model/tensors.hpp"

namespace flowlm::model {
namespace fs = std::filesystem;
using json = nlohmann::json;

const std::vector<std::string>& hf_architectures() {
  static const std::vector<std::string> a{"GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM",
                                          "Qwen2ForCausalLM", "Gemma2ForCausalLM"};
  return a;
}

const std::vector<std::string>& hf_side_files() {
  static const std::vector<std::string> f{
      "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "vocab.json",
      "merges.txt",     "added_tokens.json",     "generation_config.json"};
  return f;
}

namespace {

/// Typed access to config.json that remembers which keys were read.
class Keys {
 public:
  Keys(const json& j, std::string file) : j_(j), file_(std::move(file)) {}

  bool given(const std::string& key) {
    used_.insert(key);
    return j_.contains(key) && !j_[key].is_null();
  }
  std::int64_t integer(const std::string& key, std::optional<std::int64_t> fallback = std::nullopt) {
    if (!given(key)) return need(key, fallback);
    if (!j_[key].is_number_integer()) bad(key, "an integer");
    return j_[key].get<std::int64_t>();
  }
  double number(const std::string& key, std::optional<double> fallback = std::nullopt) {
    if (!given(key)) return need(key, fallback);
    if (!j_[key].is_number()) bad(key, "a number");
    return j_[key].get<double>();
  }
  bool boolean(const std::string& key, bool fallback) {
    if (!given(key)) return fallback;
    if (!j_[key].is_boolean()) bad(key, "true or false");
    return j_[key].get<bool>();
  }
  std::string string(const std::string& key, const std::string& fallback) {
    if (!given(key)) return fallback;
    if (!j_[key].is_string()) bad(key, "a string");
    return j_[key].get<std::string>();
  }
  /// The key must be absent, null or one of `allowed`; `why` says what flowlm supports instead.
  void require(const std::string& key, const std::vector<json>& allowed, const std::string& why) {
    if (!given(key)) return;
    for (const auto& a : allowed)
      if (j_[key] == a) return;
    fail<ConfigError>("{}: {} = {} is not supported: {}", file_, key, io::json_brief(j_[key]), why);
  }
  /// Keys with no effect on the forward pass in flowlm (dropout rates, token ids, caching).
  void ignore(std::initializer_list<const char*> keys) {
    for (const char* k : keys) used_.insert(k);
  }
  std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (auto it = j_.begin(); it != j_.end(); ++it)
      if (!used_.count(it.key())) out.push_back(it.key());
    return out;
  }
  const std::string& file() const { return file_; }

 private:
  template <typename T>
  T need(const std::string& key, std::optional<T> fallback) {
    if (!fallback) fail<ConfigError>("{}: the key '{}' is missing", file_, key);
    return *fallback;
  }
  [[noreturn]] void bad(const std::string& key, const char* want) {
    fail<ConfigError>("{}: {} = {} is not {}", file_, key, io::json_brief(j_[key]), want);
  }
  const json& j_;
  std::string file_;
  std::set<std::string> used_;
};

// Keys every architecture may carry that do not change the model flowlm builds.
void ignore_common(Keys& k) {
  k.ignore({"architectures",
            "model_type",
            "torch_dtype",
            "transformers_version",
            "_name_or_path",
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
            "use_cache",
            "initializer_range",
            "attention_dropout",
            "resid_pdrop",
            "embd_pdrop",
            "attn_pdrop",
            "summary_type",
            "summary_use_proj",
            "summary_activation",
            "summary_proj_to_labels",
            "summary_first_dropout",
            "task_specific_params",
            "n_ctx",
            "pretraining_tp",
            "cache_implementation",
            "return_dict",
            "output_hidden_states",
            "output_attentions",
            "id2label",
            "label2id",
            "tokenizer_class",
            "max_window_layers"});
}

ModelConfig gpt2_from(Keys& k) {
  ModelConfig c;
  c.arch = "gpt2";
  c.vocab_size = k.integer("vocab_size");
  c.block_size = k.integer("n_positions");
  c.n_embd = k.integer("n_embd");
  c.n_layer = k.integer("n_layer");
  c.n_head = k.integer("n_head");
  c.n_ff = k.given("n_inner") ? k.integer("n_inner") : 4 * c.n_embd;
  c.norm_eps = k.number("layer_norm_epsilon", 1e-5);
  c.tie_embeddings = k.boolean("tie_word_embeddings", true);
  k.require("activation_function", {"gelu_new", "gelu_pytorch_tanh"},
            "flowlm's GPT-2 uses the tanh GELU (gelu_new)");
  k.require("scale_attn_weights", {true}, "attention scores are always scaled by 1/sqrt(head_dim)");
  k.require("scale_attn_by_inverse_layer_idx", {false}, "no per-layer attention scaling");
  k.ignore({"reorder_and_upcast_attn"});  // a precision option: flowlm computes in fp32
  return c;
}

/// Llama, Mistral and Qwen2: RMSNorm, RoPE, SwiGLU, untied head unless said otherwise.
/// The shape keys Llama-style and Gemma-2 configs share, over `arch`'s family defaults.
ModelConfig decoder_from(Keys& k, const char* arch, std::optional<std::int64_t> head_dim, bool tied) {
  ModelConfig c;
  c.arch = arch;
  c = config::with_family_defaults(c, {});
  c.vocab_size = k.integer("vocab_size");
  c.n_embd = k.integer("hidden_size");
  c.n_ff = k.integer("intermediate_size");
  c.n_layer = k.integer("num_hidden_layers");
  c.n_head = k.integer("num_attention_heads");
  c.n_kv_head = k.integer("num_key_value_heads", c.n_head);
  c.head_dim = k.integer("head_dim", head_dim ? *head_dim : c.n_embd / std::max<std::int64_t>(1, c.n_head));
  c.block_size = k.integer("max_position_embeddings");
  c.norm_eps = k.number("rms_norm_eps", 1e-6);
  c.rope_theta = k.number("rope_theta", 10000.0);
  c.tie_embeddings = k.boolean("tie_word_embeddings", tied);
  return c;
}

ModelConfig llama_from(Keys& k, const std::string& architecture) {
  ModelConfig c = decoder_from(k, "llama", std::nullopt, /*tied=*/false);
  k.require("hidden_act", {"silu"}, "the gated MLP uses SiLU (swiglu)");
  k.require("rope_scaling", {},
            "flowlm's RoPE has no frequency scaling (Llama 3.1+ 'llama3', 'linear', 'yarn')");
  k.require("mlp_bias", {false}, "the MLP has no biases");
  if (architecture == "Qwen2ForCausalLM") {
    c.biases = "qkv";
    k.require("use_sliding_window", {false}, "Qwen2's per-layer sliding window is not implemented");
    k.ignore({"sliding_window"});  // unused while use_sliding_window is false
  } else {
    k.require("attention_bias", {false}, "Llama-style attention without biases (Qwen2 has q/k/v biases)");
  }
  if (architecture == "MistralForCausalLM") {
    c.sliding_window = k.given("sliding_window") ? k.integer("sliding_window") : 0;
    c.sliding_window_layers = "all";
  }
  return c;
}

ModelConfig gemma2_from(Keys& k) {
  ModelConfig c = decoder_from(k, "gemma2", 256, /*tied=*/true);
  c.query_scale = 1.0 / std::sqrt(k.number("query_pre_attn_scalar", 256.0));
  c.attn_softcap = k.given("attn_logit_softcapping") ? k.number("attn_logit_softcapping") : 0.0;
  c.final_softcap = k.given("final_logit_softcapping") ? k.number("final_logit_softcapping") : 0.0;
  c.sliding_window = k.given("sliding_window") ? k.integer("sliding_window") : 0;
  c.sliding_window_layers = "alternate";
  c.embed_scale = 0.0;  // sqrt(hidden_size)
  k.require("hidden_activation", {"gelu_pytorch_tanh"}, "the gated MLP uses the tanh GELU (geglu)");
  k.require("hidden_act", {"gelu_pytorch_tanh"}, "the gated MLP uses the tanh GELU (geglu)");
  k.require("attention_bias", {false}, "Gemma-2 attention has no biases");
  k.require("rope_scaling", {}, "flowlm's RoPE has no frequency scaling");
  k.ignore({"sliding_window_size"});
  return c;
}

}  // namespace

HfConfig config_from_hf(const json& j, const std::string& file) {
  if (!j.is_object()) fail<ConfigError>("{}: not a JSON object", file);
  Keys k(j, file);
  const json arch = j.contains("architectures") ? j["architectures"] : json();
  if (!arch.is_array() || arch.size() != 1 || !arch[0].is_string())
    fail<ConfigError>("{}: architectures = {} must list one architecture, one of: {}", file,
                      io::json_brief(arch), fmt::join(hf_architectures(), ", "));
  HfConfig out;
  out.architecture = arch[0].get<std::string>();
  ignore_common(k);
  if (out.architecture == "GPT2LMHeadModel")
    out.cfg = gpt2_from(k);
  else if (out.architecture == "LlamaForCausalLM" || out.architecture == "MistralForCausalLM" ||
           out.architecture == "Qwen2ForCausalLM")
    out.cfg = llama_from(k, out.architecture);
  else if (out.architecture == "Gemma2ForCausalLM")
    out.cfg = gemma2_from(k);
  else
    fail<ConfigError>("{}: architectures = [\"{}\"] is not supported; flowlm imports {}", file,
                      out.architecture, fmt::join(hf_architectures(), ", "));
  for (const auto& key : k.unused())
    out.notes.push_back(fmt::format("{}: key '{}' = {} has no meaning in flowlm; ignored", file, key,
                                    io::json_brief(j[key])));
  try {
    out.cfg = config::resolve_model(out.cfg);
  } catch (const ConfigError& e) {
    fail<ConfigError>("{}: the model it describes is not valid: {}", file, e.what());
  }
  return out;
}

std::string default_hf_architecture(const ModelConfig& cfg) {
  if (cfg.arch == "gpt2") return "GPT2LMHeadModel";
  if (cfg.arch == "gemma2") return "Gemma2ForCausalLM";
  if (cfg.biases == "qkv") return "Qwen2ForCausalLM";
  if (cfg.sliding_window > 0) return "MistralForCausalLM";
  return "LlamaForCausalLM";
}

json config_to_hf(const ModelConfig& in, std::string architecture, io::SafetensorsDType dtype) {
  const ModelConfig c = config::resolve_model(in);
  if (architecture.empty()) architecture = default_hf_architecture(c);
  json j;
  j["architectures"] = {architecture};
  j["torch_dtype"] = dtype == io::SafetensorsDType::bf16 ? "bfloat16" : "float32";
  j["vocab_size"] = c.vocab_size;
  j["tie_word_embeddings"] = c.tie_embeddings;
  if (architecture == "GPT2LMHeadModel") {
    j["model_type"] = "gpt2";
    j["n_positions"] = c.block_size;
    j["n_ctx"] = c.block_size;
    j["n_embd"] = c.n_embd;
    j["n_layer"] = c.n_layer;
    j["n_head"] = c.n_head;
    j["n_inner"] = c.n_ff;
    j["layer_norm_epsilon"] = c.norm_eps;
    j["activation_function"] = "gelu_new";
    for (const char* p : {"resid_pdrop", "embd_pdrop", "attn_pdrop"}) j[p] = 0.0;
  } else {
    j["hidden_size"] = c.n_embd;
    j["intermediate_size"] = c.n_ff;
    j["num_hidden_layers"] = c.n_layer;
    j["num_attention_heads"] = c.n_head;
    j["num_key_value_heads"] = c.n_kv_head;
    j["head_dim"] = c.head_dim;
    j["max_position_embeddings"] = c.block_size;
    j["rms_norm_eps"] = c.norm_eps;
    j["rope_theta"] = c.rope_theta;
    j["attention_dropout"] = 0.0;
    if (architecture == "Gemma2ForCausalLM") {
      j["model_type"] = "gemma2";
      j["hidden_activation"] = "gelu_pytorch_tanh";
      j["hidden_act"] = "gelu_pytorch_tanh";
      j["query_pre_attn_scalar"] = 1.0 / (c.query_scale * c.query_scale);
      j["attn_logit_softcapping"] = c.attn_softcap > 0 ? json(c.attn_softcap) : json();
      j["final_logit_softcapping"] = c.final_softcap > 0 ? json(c.final_softcap) : json();
      j["sliding_window"] = c.sliding_window;
      j["attention_bias"] = false;
    } else {
      j["hidden_act"] = "silu";
      if (architecture == "LlamaForCausalLM") {
        j["model_type"] = "llama";
        j["attention_bias"] = false;
        j["mlp_bias"] = false;
        j["rope_scaling"] = json();
      } else if (architecture == "MistralForCausalLM") {
        j["model_type"] = "mistral";
        j["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json();
      } else if (architecture == "Qwen2ForCausalLM") {
        j["model_type"] = "qwen2";
        j["use_sliding_window"] = false;
      }
    }
  }
  // Read back: the architecture must express every field of the config.
  const ModelConfig back = config_from_hf(j, "config.json of " + architecture).cfg;
  if (!back.same_architecture(c)) {
    const auto a = model_attrs(c), b = model_attrs(back);
    std::string diff;
    for (const auto& [key, value] : a)
      if (b.count(key) && b.at(key) != value) {
        diff = key;
        break;
      }
    fail<ConfigError>(
        "the model cannot be written as {}: its model.{} has no equivalent there (choose another "
        "--architecture, or the model is not a {} model)",
        architecture, diff.empty() ? "config" : diff, architecture);
  }
  return j;
}

// ---- import / export --------------------------------------------------------------------------

namespace {

/// Hub GPT-2 files name tensors without the "transformer." prefix; some keep the attention mask
/// buffers. Returns the flowlm name, or "" for a tensor that is not a parameter.
std::string flowlm_name(const std::string& hf, const ModelConfig& cfg) {
  const auto ends_with = [&](const std::string& s) {
    return hf.size() >= s.size() && hf.compare(hf.size() - s.size(), s.size(), s) == 0;
  };
  if (ends_with(".attn.bias") || ends_with(".attn.masked_bias") || ends_with(".rotary_emb.inv_freq"))
    return "";
  if (cfg.arch == "gpt2" && hf.rfind("transformer.", 0) != 0 && hf != "lm_head.weight")
    return "transformer." + hf;
  return hf;
}

json read_json(const fs::path& file) {
  std::ifstream in(file);
  if (!in) fail<IoError>("{}: cannot open", file.string());
  const json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail<IoError>("{}: not valid JSON", file.string());
  return j;
}

fs::path tokenizer_dir_for(const fs::path& out) {
  fs::path d = out;
  d.replace_extension(".tokenizer");
  return d;
}

/// Copies the side files of `from` (a dir) into `to`; returns their names.
std::vector<std::string> copy_side_files(const fs::path& from, const fs::path& to) {
  std::vector<std::string> copied;
  for (const auto& f : hf_side_files()) {
    if (!fs::is_regular_file(from / f)) continue;
    fs::create_directories(to);
    const fs::path tmp = to / (f + ".tmp");
    fs::copy_file(from / f, tmp, fs::copy_options::overwrite_existing);
    fs::rename(tmp, to / f);
    copied.push_back(f);
  }
  return copied;
}

/// The tokenizer recorded by a checkpoint, or by the checkpoints it started from (model.init_from,
/// inherit.from) — a fine-tuned model exports with its base model's tokenizer.
fs::path find_tokenizer(const fs::path& ckpt_path, int depth = 0) {
  if (depth > 16 || !fs::exists(ckpt_path)) return {};
  const io::CheckpointReader ckpt(ckpt_path);
  const auto& extra = ckpt.meta().extra;
  if (const auto it = extra.find("tokenizer"); it != extra.end() && fs::is_directory(it->second))
    return it->second;
  if (ckpt.meta().config_toml.empty()) return {};
  try {
    const config::JobConfig job =
        config::parse_job(ckpt.meta().config_toml, ckpt_path.string() + ":config_toml");
    for (const std::string& from : {job.model.init_from, job.inherit.from})
      if (!from.empty())
        if (fs::path t = find_tokenizer(from, depth + 1); !t.empty()) return t;
  } catch (const Error&) {
  }
  return {};
}

}  // namespace

fs::path checkpoint_tokenizer(const fs::path& checkpoint) { return find_tokenizer(checkpoint); }

void import_hf(const fs::path& hf_dir, const fs::path& out, const comm::Communicator& world) {
  // Rank 0 does the work; the other ranks wait and rethrow its error.
  world.on_root<int>([&] {
    const fs::path cfg_file = hf_dir / "config.json";
    if (!fs::is_directory(hf_dir))
      fail<IoError>("{}: not a directory (expected a Hugging Face model dir)", hf_dir.string());
    const HfConfig hf = config_from_hf(read_json(cfg_file), cfg_file.string());
    for (const auto& n : hf.notes) log::info("import: {}", n);
    const ModelConfig& cfg = hf.cfg;
    const io::SafetensorsModel weights(hf_dir);
    const auto table = make_param_table(cfg);

    // Every parameter present once, nothing unknown.
    std::map<std::string, std::string> source;  // flowlm name -> file name
    for (const auto& e : weights.tensors()) {
      const std::string name = flowlm_name(e.name, cfg);
      if (name.empty()) continue;
      if (name == "lm_head.weight" && cfg.tie_embeddings) {
        log::info("import: {} ignored: tie_word_embeddings = true (the head is the token embedding)", e.name);
        continue;
      }
      source[name] = e.name;
    }
    for (const auto& p : table) {
      if (!source.count(p.name))
        fail<IoError>("{}: the weights lack '{}' ({} needs it for this config)", hf_dir.string(), p.name,
                      hf.architecture);
    }
    std::set<std::string> wanted;
    for (const auto& p : table) wanted.insert(p.name);
    for (const auto& [name, file_name] : source)
      if (!wanted.count(name))
        fail<IoError>("{}: tensor '{}' has no place in a {} with this config.json", hf_dir.string(),
                      file_name, hf.architecture);

    io::CheckpointMeta meta;
    meta.step = 0;
    meta.world_size = 1;
    config::JobConfig job;
    job.model = cfg;
    meta.config_toml = config::to_toml(job);
    meta.model_attrs = model_attrs(cfg);
    meta.extra["kind"] = "import";
    meta.extra["hf_source"] = fs::absolute(hf_dir).string();
    meta.extra["hf_architecture"] = hf.architecture;
    const fs::path tok = tokenizer_dir_for(out);
    const auto copied = copy_side_files(hf_dir, tok);
    if (!copied.empty()) meta.extra["tokenizer"] = tok.string();
    std::vector<io::TensorRef> refs;
    for (const auto& p : table) refs.push_back({p.name, p.shape, nullptr, 0});
    io::write_checkpoint_streamed(
        out, meta, refs,
        [&](std::size_t i, float* dst) { weights.read_f32(source[table[i].name], table[i].shape, dst); },
        comm::Communicator::self());
    log::info("import: {} ({}, {} params, {} layers) -> {}{}", hf_dir.string(), hf.architecture,
              count_params(cfg), cfg.n_layer, out.string(),
              copied.empty()
                  ? std::string("; no tokenizer files found")
                  : fmt::format("; tokenizer files ({}) -> {}", fmt::join(copied, ", "), tok.string()));
    return 0;
  });
}

namespace {

/// PEFT's adapter_config.json for the adapters of a LoRA checkpoint (PEFT 0.13's LoraConfig keys).
json peft_adapter_config(const ModelConfig& cfg, const LoraCheckpointInfo& info) {
  return json{{"peft_type", "LORA"},
              {"task_type", "CAUSAL_LM"},
              {"r", info.spec.r},
              {"lora_alpha", info.spec.alpha},
              {"lora_dropout", 0.0},
              {"target_modules", info.spec.targets},
              {"bias", "none"},
              {"fan_in_fan_out", cfg.arch == "gpt2"},  // GPT-2's Conv1D stores [in, out]
              {"use_rslora", false},
              {"use_dora", false},
              {"init_lora_weights", true},
              {"inference_mode", true},
              {"modules_to_save", nullptr},
              {"layers_to_transform", nullptr},
              {"layers_pattern", nullptr},
              {"rank_pattern", json::object()},
              {"alpha_pattern", json::object()},
              {"base_model_name_or_path", info.base.string()},
              {"revision", nullptr}};
}

void write_text_file(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    out << text;
    if (!out) fail<IoError>("{}: cannot write", tmp.string());
  }
  fs::rename(tmp, path);
}

void export_adapter(const fs::path& checkpoint, const fs::path& dir, const ExportOptions& opt) {
  const io::CheckpointReader ckpt(checkpoint);
  if (!is_lora_checkpoint(ckpt))
    fail<UsageError>("--adapter: {} holds a whole model, not LoRA adapters; export it without --adapter",
                     checkpoint.string());
  const LoraCheckpointInfo info = read_lora_info(ckpt);
  const ModelConfig cfg = config::resolve_model(read_model_config(ckpt));
  const auto listed = ckpt.tensors("model");
  std::vector<io::SafetensorsOut> tensors;
  for (const auto& [name, shape] : listed) tensors.push_back({name, shape});
  fs::create_directories(dir);
  io::write_safetensors(
      dir / "adapter_model.safetensors", tensors, opt.dtype,
      [&](std::size_t i, float* dst) { ckpt.read("model", tensors[i].name, tensors[i].shape, dst); },
      {{"format", "pt"}});
  write_text_file(dir / "adapter_config.json", peft_adapter_config(cfg, info).dump(2) + "\n");
  log::info(
      "export: adapters of {} (r = {}, alpha = {}, on {}) -> {} (PEFT: adapter_config.json, "
      "adapter_model.safetensors, {}); their base is {}",
      checkpoint.string(), info.spec.r, info.spec.alpha, fmt::join(info.spec.targets, ", "), dir.string(),
      io::safetensors_dtype_name(opt.dtype), info.base.string());
}

}  // namespace

void export_hf(const fs::path& checkpoint, const fs::path& hf_dir, const ExportOptions& opt,
               const comm::Communicator& world) {
  world.on_root<int>([&] {
    if (opt.adapter) {
      export_adapter(checkpoint, hf_dir, opt);
      return 0;
    }
    const io::CheckpointReader ckpt(checkpoint);
    // A LoRA checkpoint: its base with the adapters folded in.
    const std::unique_ptr<Transformer> merged = is_lora_checkpoint(ckpt) ? load_model(checkpoint) : nullptr;
    const ModelConfig cfg = config::resolve_model(read_model_config(ckpt));
    std::string architecture = opt.architecture;
    if (architecture.empty()) {
      const auto it = ckpt.meta().extra.find("hf_architecture");
      architecture = it != ckpt.meta().extra.end() ? it->second : default_hf_architecture(cfg);
    }
    if (std::find(hf_architectures().begin(), hf_architectures().end(), architecture) ==
        hf_architectures().end())
      fail<UsageError>("--architecture {}: choose one of {}", architecture,
                       fmt::join(hf_architectures(), ", "));
    const json config = config_to_hf(cfg, architecture, opt.dtype);
    const auto table = make_param_table(cfg);
    std::vector<io::SafetensorsOut> tensors;
    for (const auto& p : table) tensors.push_back({p.name, p.shape});
    fs::create_directories(hf_dir);
    const auto files =
        io::write_safetensors_model(hf_dir, tensors, opt.dtype,
                                    [&](std::size_t i, float* dst) {
                                      if (merged)
                                        std::copy_n(merged->params() + table[i].offset, table[i].numel, dst);
                                      else
                                        ckpt.read("model", table[i].name, table[i].shape, dst);
                                    },
                                    opt.max_shard_bytes, {{"format", "pt"}});
    write_text_file(hf_dir / "config.json", config.dump(2) + "\n");
    fs::path tok = opt.tokenizer.empty() ? find_tokenizer(checkpoint) : opt.tokenizer;
    std::vector<std::string> copied;
    if (!tok.empty()) {
      if (fs::is_regular_file(tok)) {
        fs::copy_file(tok, hf_dir / tok.filename(), fs::copy_options::overwrite_existing);
        copied.push_back(tok.filename().string());
      } else if (fs::is_directory(tok)) {
        copied = copy_side_files(tok, hf_dir);
      } else {
        fail<UsageError>("--tokenizer {}: no such file or directory", tok.string());
      }
    }
    log::info("export: {} -> {} ({}, {}, {} file{}){}", checkpoint.string(), hf_dir.string(), architecture,
              io::safetensors_dtype_name(opt.dtype), files.size(), files.size() == 1 ? "" : "s",
              copied.empty()
                  ? std::string("; no tokenizer files (pass --tokenizer DIR to add them)")
                  : fmt::format("; tokenizer files from {}: {}", tok.string(), fmt::join(copied, ", ")));
    if (copied.empty())
      log::warn("export: {} has no tokenizer files; transformers' AutoTokenizer will not load it",
                hf_dir.string());
    return 0;
  });
}

}  // namespace flowlm::model
