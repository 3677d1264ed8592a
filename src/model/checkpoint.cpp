#include "model/checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <set>

#include "config/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"

namespace flowlm::model {

namespace {

// The architecture fields of ModelConfig with their attribute names, in one table for the
// writer and the reader.
struct AttrField {
  const char* name;
  std::variant<std::int64_t ModelConfig::*, double ModelConfig::*, std::string ModelConfig::*,
               bool ModelConfig::*>
      member;
};

const std::vector<AttrField>& attr_fields() {
  static const std::vector<AttrField> f = {
      {"arch", &ModelConfig::arch},
      {"n_layer", &ModelConfig::n_layer},
      {"n_head", &ModelConfig::n_head},
      {"n_kv_head", &ModelConfig::n_kv_head},
      {"head_dim", &ModelConfig::head_dim},
      {"n_embd", &ModelConfig::n_embd},
      {"n_ff", &ModelConfig::n_ff},
      {"vocab_size", &ModelConfig::vocab_size},
      {"block_size", &ModelConfig::block_size},
      {"norm", &ModelConfig::norm},
      {"norm_eps", &ModelConfig::norm_eps},
      {"pos", &ModelConfig::pos},
      {"rope_theta", &ModelConfig::rope_theta},
      {"mlp", &ModelConfig::mlp},
      {"biases", &ModelConfig::biases},
      {"tie_embeddings", &ModelConfig::tie_embeddings},
      {"post_norms", &ModelConfig::post_norms},
      {"embed_scale", &ModelConfig::embed_scale},
      {"attn_softcap", &ModelConfig::attn_softcap},
      {"final_softcap", &ModelConfig::final_softcap},
      {"sliding_window", &ModelConfig::sliding_window},
      {"sliding_window_layers", &ModelConfig::sliding_window_layers},
      {"query_scale", &ModelConfig::query_scale},
  };
  return f;
}

ModelConfig from_attrs(const io::CheckpointReader& ckpt) {
  const auto& attrs = ckpt.meta().model_attrs;
  const std::string file = ckpt.path().string();
  ModelConfig c;
  for (const auto& f : attr_fields()) {
    const auto it = attrs.find(f.name);
    if (it == attrs.end())
      fail<IoError>("{}: /model has no attribute '{}' (the model config is incomplete)", file, f.name);
    const io::AttrValue& v = it->second;
    std::visit(
        [&](auto member) {
          using T = std::decay_t<decltype(c.*member)>;
          if constexpr (std::is_same_v<T, std::string>) {
            if (!std::holds_alternative<std::string>(v))
              fail<IoError>("{}: attribute '{}' of /model must be a string", file, f.name);
            c.*member = std::get<std::string>(v);
          } else if constexpr (std::is_same_v<T, double>) {
            if (std::holds_alternative<std::string>(v))
              fail<IoError>("{}: attribute '{}' of /model must be a number", file, f.name);
            c.*member = std::holds_alternative<double>(v) ? std::get<double>(v)
                                                          : static_cast<double>(std::get<std::int64_t>(v));
          } else {
            if (!std::holds_alternative<std::int64_t>(v))
              fail<IoError>("{}: attribute '{}' of /model must be an integer", file, f.name);
            c.*member = static_cast<T>(std::get<std::int64_t>(v));
          }
        },
        f.member);
  }
  try {
    return config::resolve_model(c);
  } catch (const ConfigError& e) {
    fail<IoError>("{}: the model config in the /model attributes is invalid: {}", file, e.what());
  }
}

/// flowlm 0.1 wrote GPT-2 checkpoints without attributes.
ModelConfig legacy_gpt2(const io::CheckpointReader& r, std::int64_t fallback_n_head) {
  const std::string file = r.path().string();
  std::map<std::string, Shape> shapes;
  std::set<std::int64_t> blocks;
  for (const auto& [name, shape] : r.tensors("model")) {
    shapes[name] = shape;
    const auto b = param_block(name);
    if (b >= 0) blocks.insert(b);
  }
  const std::string wte = "transformer.wte.weight", wpe = "transformer.wpe.weight";
  for (const auto& need : {wte, wpe})
    if (shapes.count(need) == 0 || shapes[need].size() != 2)
      fail<IoError>(
          "{}: no model attributes and no 2-D dataset '/model/{}': not a flowlm checkpoint of a known "
          "model",
          file, need);
  ModelConfig cfg;  // GPT-2 defaults
  cfg.vocab_size = shapes[wte][0];
  cfg.n_embd = shapes[wte][1];
  cfg.block_size = shapes[wpe][0];
  cfg.n_layer = static_cast<std::int64_t>(blocks.size());
  if (blocks.empty() || *blocks.rbegin() != cfg.n_layer - 1)
    fail<IoError>("{}: transformer blocks are not numbered 0..{} (found {} blocks)", file,
                  blocks.empty() ? 0 : *blocks.rbegin(), blocks.size());
  // The head count is not visible in the tensors: the job that wrote the checkpoint knows it.
  cfg.n_head = fallback_n_head;
  try {
    const auto src = config::parse_job(r.meta().config_toml, file + " (attribute config_toml)");
    if (src.model.n_embd == cfg.n_embd) cfg.n_head = src.model.n_head;
  } catch (const Error& e) {
    if (fallback_n_head <= 0)
      fail<IoError>("{}: cannot read the head count from attribute config_toml: {}", file, e.what());
    log::warn("{}; using n_head = {} from the job", e.what(), fallback_n_head);
  }
  if (cfg.n_head <= 0)
    fail<IoError>(
        "{}: attribute config_toml describes another model (n_embd differs from the tensors); the head "
        "count is unknown",
        file);
  try {
    return config::resolve_model(cfg);
  } catch (const ConfigError& e) {
    fail<IoError>("{}: {}", file, e.what());
  }
}

}  // namespace

std::map<std::string, io::AttrValue> model_attrs(const ModelConfig& in) {
  const ModelConfig c = config::resolve_model(in);
  std::map<std::string, io::AttrValue> out;
  for (const auto& f : attr_fields())
    std::visit(
        [&](auto member) {
          using T = std::decay_t<decltype(c.*member)>;
          if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, double>)
            out[f.name] = c.*member;
          else
            out[f.name] = static_cast<std::int64_t>(c.*member);
        },
        f.member);
  return out;
}

ModelConfig read_model_config(const io::CheckpointReader& ckpt, std::int64_t fallback_n_head) {
  if (ckpt.meta().model_attrs.count("arch")) return from_attrs(ckpt);
  return legacy_gpt2(ckpt, fallback_n_head);
}

bool is_lora_checkpoint(const io::CheckpointReader& ckpt) { return ckpt.meta().extra.count("lora_base") > 0; }

LoraCheckpointInfo read_lora_info(const io::CheckpointReader& ckpt) {
  const auto& extra = ckpt.meta().extra;
  auto attr = [&](const char* name) -> const std::string& {
    const auto it = extra.find(name);
    if (it == extra.end())
      fail<IoError>("{}: LoRA checkpoint without the attribute '{}'", ckpt.path().string(), name);
    return it->second;
  };
  LoraCheckpointInfo info;
  info.base = attr("lora_base");
  info.base_fingerprint = attr("lora_base_fingerprint");
  try {
    info.spec.r = std::stoll(attr("lora_r"));
    info.spec.alpha = std::stod(attr("lora_alpha"));
  } catch (const std::exception&) {
    fail<IoError>("{}: attributes lora_r = '{}' / lora_alpha = '{}' are not numbers", ckpt.path().string(),
                  attr("lora_r"), attr("lora_alpha"));
  }
  const std::string& targets = attr("lora_targets");
  for (std::size_t b = 0; b < targets.size();) {
    const std::size_t e = std::min(targets.find(',', b), targets.size());
    if (e > b) info.spec.targets.push_back(targets.substr(b, e - b));
    b = e + 1;
  }
  return info;
}

void add_lora_meta(io::CheckpointMeta& meta, const Lora& lora, const std::filesystem::path& base,
                   const std::string& base_fingerprint) {
  meta.extra["lora_base"] = std::filesystem::absolute(base).lexically_normal().string();
  meta.extra["lora_base_fingerprint"] = base_fingerprint;
  meta.extra["lora_r"] = std::to_string(lora.spec().r);
  meta.extra["lora_alpha"] = fmt::format("{}", lora.spec().alpha);
  meta.extra["lora_targets"] = fmt::format("{}", fmt::join(lora.spec().targets, ","));
}

std::string weights_fingerprint(const Transformer& model) {
  // 64-bit words mixed in order (splitmix-style): fast enough for every load of a base model.
  const auto* words = reinterpret_cast<const std::uint64_t*>(model.params());
  const auto n = static_cast<std::size_t>(model.num_params()) * sizeof(float);
  std::uint64_t h = 0x243F6A8885A308D3ull ^ n;
  for (std::size_t i = 0; i < n / 8; ++i) {
    h ^= words[i] + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xBF58476D1CE4E5B9ull;
  }
  if (n % 8) {
    std::uint64_t tail = 0;
    std::memcpy(&tail, reinterpret_cast<const char*>(words) + n / 8 * 8, n % 8);
    h = (h ^ tail) * 0x94D049BB133111EBull;
  }
  return fmt::format("{:016x}", h);
}

std::vector<float> stored_tensor(const Transformer& model, std::size_t i, const float* flat) {
  if (const Lora* lora = model.lora()) return lora->to_peft(i, flat);
  const ParamSpec& p = model.param_table().at(i);
  return std::vector<float>(flat + p.offset, flat + p.offset + p.numel);
}

void unstore_tensor(const Transformer& model, std::size_t i, const float* stored, float* flat) {
  if (const Lora* lora = model.lora()) return lora->from_peft(i, stored, flat);
  const ParamSpec& p = model.param_table().at(i);
  std::copy(stored, stored + p.numel, flat + p.offset);
}

void merge_lora_checkpoint(const std::filesystem::path& in, const std::filesystem::path& out,
                           const comm::Communicator& world) {
  world.on_root<int>([&] {
    const io::CheckpointReader ckpt(in);
    if (!is_lora_checkpoint(ckpt))
      fail<UsageError>("merge: {} holds no LoRA adapters (it is a whole model already)", in.string());
    const auto model = load_model(in);
    io::CheckpointMeta meta = ckpt.meta();
    for (const char* key : {"lora_base", "lora_base_fingerprint", "lora_r", "lora_alpha", "lora_targets"})
      meta.extra.erase(key);
    meta.extra["kind"] = "merged";
    meta.extra["merged_from"] = std::filesystem::absolute(in).lexically_normal().string();
    meta.world_size = 1;
    meta.model_attrs = model_attrs(model->config());
    std::vector<io::TensorRef> tensors;
    for (const auto& p : model->param_table())
      tensors.push_back({p.name, p.shape, model->params() + p.offset, 0});
    io::write_checkpoint(out, meta, tensors, {}, comm::Communicator::self());
    log::info("merge: {} (adapters of {}) -> {} ({} params)", in.string(), ckpt.meta().extra.at("lora_base"),
              out.string(), model->num_params());
    return 0;
  });
}

void load_adapters(Transformer& model, const io::CheckpointReader& ckpt) {
  Lora* lora = model.lora();
  if (!lora) fail<Error>("load_adapters: the model has no adapters");
  std::vector<std::vector<float>> peft;
  for (const auto& p : lora->table()) {
    std::vector<float> t(static_cast<std::size_t>(p.numel));
    ckpt.read("model", p.name, p.shape, t.data());
    peft.push_back(std::move(t));
  }
  lora->write_all(peft);
}

void load_weights(Transformer& model, const io::CheckpointReader& ckpt) {
  if (is_lora_checkpoint(ckpt)) {
    if (!model.lora())
      fail<IoError>(
          "{}: is a LoRA checkpoint (adapters of {}), not a model; load it through the stages that read "
          "checkpoints (they fold the adapters in) or run `flowlm merge {} out.h5` first",
          ckpt.path().string(), ckpt.meta().extra.at("lora_base"), ckpt.path().string());
    load_adapters(model, ckpt);
    return;
  }
  if (ckpt.meta().model_attrs.count("arch")) {
    const ModelConfig theirs = from_attrs(ckpt);
    if (!theirs.same_architecture(model.config()))
      fail<IoError>(
          "{}: holds a {} model ({} layers, n_embd {}) that differs from the job's {} model ({} layers, "
          "n_embd {}); check model.* against `flowlm inspect {}`",
          ckpt.path().string(), theirs.arch, theirs.n_layer, theirs.n_embd, model.config().arch,
          model.config().n_layer, model.config().n_embd, ckpt.path().string());
  }
  float* params = model.params();  // host backends (a device backend's weights need a copy first)
  for (const auto& p : model.param_table()) ckpt.read("model", p.name, p.shape, params + p.offset);
}

std::unique_ptr<Transformer> load_model(const std::filesystem::path& checkpoint, const std::string& backend,
                                        int depth) {
  const io::CheckpointReader r(checkpoint);
  if (!is_lora_checkpoint(r)) {
    auto m = std::make_unique<Transformer>(read_model_config(r), backend);
    load_weights(*m, r);
    return m;
  }
  const LoraCheckpointInfo info = read_lora_info(r);
  if (depth > 16)
    fail<IoError>("{}: LoRA checkpoints name each other as base in a cycle", checkpoint.string());
  if (!std::filesystem::exists(info.base))
    fail<IoError>("{}: the base model of these adapters, {}, does not exist (moved or deleted?)",
                  checkpoint.string(), info.base.string());
  auto m = load_model(info.base, backend, depth + 1);
  if (!read_model_config(r).same_architecture(m->config()))
    fail<IoError>("{}: the adapters were trained on another architecture than {} holds", checkpoint.string(),
                  info.base.string());
  if (const std::string now = weights_fingerprint(*m); now != info.base_fingerprint)
    fail<IoError>(
        "{}: its base {} has changed since the adapters were trained (weights fingerprint {} instead of {})",
        checkpoint.string(), info.base.string(), now, info.base_fingerprint);
  m->enable_lora(info.spec);
  load_adapters(*m, r);
  m->merge_lora();
  return m;
}

config::JobConfig with_init_from_model(const config::JobConfig& job) {
  if (job.model.init_from.empty()) return job;
  const std::string& file = job.model.init_from;
  const ModelConfig theirs = read_model_config(io::CheckpointReader(file));
  const auto& given = job.model_keys_given;
  for (const auto& f : attr_fields()) {
    if (std::find(given.begin(), given.end(), f.name) == given.end()) continue;
    std::visit(
        [&](auto member) {
          if (job.model.*member == theirs.*member) return;
          fail<ConfigError>(
              "{}: model.{} = {} but model.init_from = {} holds a model with {} = {}; remove model.{} from "
              "the "
              "job (the model comes from the checkpoint it starts from) or start from another checkpoint",
              job.origin.empty() ? std::string("job") : job.origin, f.name, job.model.*member, file, f.name,
              theirs.*member, f.name);
        },
        f.member);
  }
  config::JobConfig out = job;
  out.model = theirs;
  out.model.init_from = file;
  return out;
}

}  // namespace flowlm::model
