#include "model/checkpoint.hpp"

#include <algorithm>
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

void load_weights(Transformer& model, const io::CheckpointReader& ckpt) {
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

std::unique_ptr<Transformer> load_model(const std::filesystem::path& checkpoint, const std::string& backend) {
  const io::CheckpointReader r(checkpoint);
  auto m = std::make_unique<Transformer>(read_model_config(r), backend);
  load_weights(*m, r);
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
