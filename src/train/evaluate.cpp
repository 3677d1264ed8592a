#include "train/evaluate.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "config/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "data/shard.hpp"
#include "io/checkpoint.hpp"

namespace flowlm::train {

LossSum evaluate_windows(model::GPT& gpt, const data::TokenDataset& data, index_t max_windows,
                         index_t micro_batch, const comm::Communicator& world) {
  const index_t T = data.seq_len();
  const std::vector<index_t> mine = data.val_windows(world.rank(), world.size(), max_windows);
  std::vector<std::int32_t> inputs(static_cast<std::size_t>(micro_batch * T)),
      targets(static_cast<std::size_t>(micro_batch * T));
  double sum = 0;
  for (std::size_t first = 0; first < mine.size(); first += static_cast<std::size_t>(micro_batch)) {
    const auto B = static_cast<index_t>(
        std::min<std::size_t>(static_cast<std::size_t>(micro_batch), mine.size() - first));
    for (index_t b = 0; b < B; ++b)
      data.load_window(mine[first + static_cast<std::size_t>(b)], inputs.data() + b * T,
                       targets.data() + b * T);
    gpt.forward(inputs.data(), targets.data(), nullptr, B, T, /*training=*/false);
    const float* losses = gpt.token_losses();
    for (index_t i = 0; i < B * T; ++i) sum += losses[i];
  }
  LossSum total;
  total.sum = world.sum(sum);
  total.tokens = world.sum(static_cast<std::int64_t>(mine.size()) * T);
  return total;
}

model::GPTConfig checkpoint_model_config(const std::filesystem::path& checkpoint,
                                         std::int64_t fallback_n_head) {
  const io::CheckpointReader r(checkpoint);
  std::map<std::string, Shape> shapes;
  std::set<std::int64_t> blocks;
  for (const auto& [name, shape] : r.tensors("model")) {
    shapes[name] = shape;
    const auto b = model::param_block(name);
    if (b >= 0) blocks.insert(b);
  }
  const std::string wte = "transformer.wte.weight", wpe = "transformer.wpe.weight";
  for (const auto& need : {wte, wpe})
    if (shapes.count(need) == 0 || shapes[need].size() != 2)
      fail<IoError>("{}: no 2-D dataset '/model/{}': not a GPT-2 checkpoint", checkpoint.string(), need);
  model::GPTConfig cfg;
  cfg.vocab_size = shapes[wte][0];
  cfg.n_embd = shapes[wte][1];
  cfg.block_size = shapes[wpe][0];
  cfg.n_layer = static_cast<std::int64_t>(blocks.size());
  if (blocks.empty() || *blocks.rbegin() != cfg.n_layer - 1)
    fail<IoError>("{}: transformer blocks are not numbered 0..{} (found {} blocks)", checkpoint.string(),
                  blocks.empty() ? 0 : *blocks.rbegin(), blocks.size());
  // The head count is not visible in the tensors: the job that wrote the checkpoint knows it.
  cfg.n_head = fallback_n_head;
  try {
    const auto src =
        config::parse_job(r.meta().config_toml, checkpoint.string() + " (attribute config_toml)");
    if (src.model.n_embd == cfg.n_embd) cfg.n_head = src.model.n_head;
  } catch (const Error& e) {
    if (fallback_n_head <= 0)
      fail<IoError>("{}: cannot read the head count from attribute config_toml: {}", checkpoint.string(),
                    e.what());
    log::warn("{}; using n_head = {} from the job", e.what(), fallback_n_head);
  }
  if (cfg.n_head <= 0)
    fail<IoError>(
        "{}: attribute config_toml describes another model (n_embd differs from the tensors); "
        "the head count is unknown",
        checkpoint.string());
  model::validate(cfg);
  return cfg;
}

std::vector<std::filesystem::path> expand_checkpoints(const std::vector<std::string>& specs,
                                                      const std::string& key) {
  namespace fs = std::filesystem;
  std::vector<fs::path> out;
  for (const auto& spec : specs) {
    std::error_code ec;
    if (fs::is_directory(spec, ec)) {
      const auto found = io::list_checkpoints(spec);
      if (found.empty()) fail<IoError>("{}: directory {} has no step_*.h5 checkpoints", key, spec);
      for (const auto& [step, path] : found) out.push_back(path);
      continue;
    }
    if (spec.find_first_of("*?[") == std::string::npos && !fs::exists(spec, ec))
      fail<IoError>("{}: {} does not exist (give run directories, checkpoint files or globs)", key, spec);
    for (const auto& path : data::expand_paths({spec})) out.push_back(path);
  }
  return out;
}

std::unique_ptr<model::GPT> load_gpt(const std::filesystem::path& checkpoint) {
  auto gpt = std::make_unique<model::GPT>(checkpoint_model_config(checkpoint));
  const io::CheckpointReader ckpt(checkpoint);
  for (const auto& p : gpt->param_table()) ckpt.read("model", p.name, p.shape, gpt->params() + p.offset);
  return gpt;
}

std::vector<std::vector<std::int32_t>> greedy_answers(model::GPT& gpt, const data::SampleSet& set,
                                                      const std::vector<index_t>& ids,
                                                      const std::vector<index_t>& max_new, std::int32_t eot) {
  const auto B = static_cast<index_t>(ids.size());
  const index_t V = gpt.config().vocab_size, Tmax = gpt.config().block_size;
  std::vector<std::vector<std::int32_t>> seq(ids.size()), out(ids.size());
  std::vector<bool> done(ids.size(), false);
  for (index_t b = 0; b < B; ++b) {
    const index_t i = ids[static_cast<std::size_t>(b)];
    seq[static_cast<std::size_t>(b)].assign(set.sample(i), set.sample(i) + set.answer_start[i]);
    if (max_new[static_cast<std::size_t>(b)] <= 0) done[static_cast<std::size_t>(b)] = true;
  }
  std::vector<std::int32_t> tokens;
  for (;;) {
    index_t T = 0;
    for (index_t b = 0; b < B; ++b)
      if (!done[static_cast<std::size_t>(b)])
        T = std::max(T, static_cast<index_t>(seq[static_cast<std::size_t>(b)].size()));
    if (T == 0) break;
    // Right padding is harmless: causal attention keeps each row's last real position exact.
    T = std::min(T, Tmax);
    tokens.assign(static_cast<std::size_t>(B * T), eot);
    for (index_t b = 0; b < B; ++b) {
      const auto& s = seq[static_cast<std::size_t>(b)];
      const index_t L = std::min(T, static_cast<index_t>(s.size()));
      std::copy(s.end() - L, s.end(), tokens.begin() + b * T);
    }
    gpt.forward(tokens.data(), nullptr, nullptr, B, T, /*training=*/false);
    const float* logits = gpt.logits();
    for (index_t b = 0; b < B; ++b) {
      const auto bs = static_cast<std::size_t>(b);
      if (done[bs]) continue;
      const index_t pos = std::min(T, static_cast<index_t>(seq[bs].size())) - 1;
      const float* row = logits + (b * T + pos) * V;
      const auto next = static_cast<std::int32_t>(std::max_element(row, row + V) - row);
      seq[bs].push_back(next);
      out[bs].push_back(next);
      if (next == eot || static_cast<index_t>(out[bs].size()) >= max_new[bs]) done[bs] = true;
    }
  }
  return out;
}

SampleEval evaluate_samples(model::GPT& gpt, const data::SampleSet& set, index_t micro_batch,
                            const comm::Communicator& world) {
  if (set.max_input_length() > gpt.config().block_size)
    fail<DataError>(
        "eval: the sample set holds a sample of {} input tokens, more than the model's block_size {}",
        set.max_input_length(), gpt.config().block_size);
  const index_t V = gpt.config().vocab_size;
  double loss = 0;
  std::int64_t tokens = 0, correct = 0;
  data::PaddedBatch batch;
  for (index_t first = 0; first < set.size(); first += micro_batch) {
    const index_t B = std::min(micro_batch, set.size() - first);
    std::vector<index_t> ids(static_cast<std::size_t>(B));
    for (index_t b = 0; b < B; ++b) ids[static_cast<std::size_t>(b)] = first + b;
    data::pack_samples(set, ids, batch);
    gpt.forward(batch.inputs.data(), batch.targets.data(), batch.mask.data(), batch.B, batch.T, false);
    const float* l = gpt.token_losses();
    for (index_t k = 0; k < batch.B * batch.T; ++k) loss += l[k];
    tokens += gpt.counted_tokens();
    // Greedy decoding reproduces the answer (closing EOT included) exactly when the argmax
    // at every answer position of the teacher-forced pass is the answer token: by induction,
    // the greedy prefix then equals the answer's, so its logits are these. One forward pass
    // instead of one per answer token.
    const float* logits = gpt.logits();
    for (index_t b = 0; b < B; ++b) {
      bool all = true;
      for (index_t t = 0; t < batch.T && all; ++t) {
        const index_t k = b * batch.T + t;
        if (batch.mask[static_cast<std::size_t>(k)] == 0.0f) continue;
        const float* row = logits + k * V;
        all = std::max_element(row, row + V) - row == batch.targets[static_cast<std::size_t>(k)];
      }
      correct += all;
    }
  }
  SampleEval r;
  r.answer_loss.sum = world.sum(loss);
  r.answer_loss.tokens = world.sum(tokens);
  r.correct = world.sum(correct);
  r.samples = world.sum(static_cast<std::int64_t>(set.size()));
  return r;
}

}  // namespace flowlm::train
