#include "train/evaluate.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "config/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "data/shard.hpp"
#include "io/checkpoint.hpp"
#include "model/decode.hpp"

namespace flowlm::train {

LossSum evaluate_windows(model::Transformer& gpt, const data::TokenDataset& data, index_t max_windows,
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

std::vector<std::vector<std::int32_t>> greedy_answers(model::Transformer& gpt, const data::SampleSet& set,
                                                      const std::vector<index_t>& ids,
                                                      const std::vector<index_t>& max_new, std::int32_t eot,
                                                      Decoding decoding, index_t batch) {
  if (decoding == Decoding::kv_cache) {
    // Rows that may generate nothing are left out; the others stop at their own max_new.
    std::vector<std::vector<std::int32_t>> prompts, out(ids.size());
    std::vector<std::size_t> rows;
    index_t most = 0;
    for (std::size_t b = 0; b < ids.size(); ++b) {
      if (max_new[b] <= 0) continue;
      const index_t i = ids[b];
      prompts.emplace_back(set.sample(i), set.sample(i) + set.answer_start[i]);
      rows.push_back(b);
      most = std::max(most, max_new[b]);
    }
    model::GenerateOptions opt;
    opt.max_new_tokens = most;
    opt.eot = eot;
    opt.stop = [&](std::size_t r, const std::vector<std::int32_t>& got) {
      return static_cast<index_t>(got.size()) >= max_new[rows[r]];
    };
    auto got = model::generate(gpt, prompts, opt, batch);
    for (std::size_t r = 0; r < rows.size(); ++r) {
      // generate() drops the EOT that ended a row; greedy_answers keeps it.
      if (static_cast<index_t>(got[r].size()) < max_new[rows[r]]) got[r].push_back(eot);
      out[rows[r]] = std::move(got[r]);
    }
    return out;
  }
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

SampleEval evaluate_samples(model::Transformer& gpt, const data::SampleSet& set, index_t micro_batch,
                            const comm::Communicator& world) {
  if (set.max_input_length() > gpt.config().block_size)
    fail<DataError>(
        "eval: the sample set holds a sample of {} input tokens, more than the model's block_size {}",
        set.max_input_length(), gpt.config().block_size);
  const index_t V = gpt.config().vocab_size;
  double loss = 0;
  std::int64_t tokens = 0, correct = 0;
  std::vector<double> local_correct, local_loss, local_tokens;
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
    for (index_t b = 0; b < B; ++b) {
      double sl = 0;
      for (index_t t = 0; t < batch.T; ++t) sl += l[b * batch.T + t];
      local_loss.push_back(sl);
      local_tokens.push_back(static_cast<double>(set.answer_tokens(first + b)));
    }
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
      local_correct.push_back(all ? 1.0 : 0.0);
    }
  }
  SampleEval r;
  r.sample_correct = world.allgatherv(local_correct);
  r.sample_loss = world.allgatherv(local_loss);
  r.sample_tokens = world.allgatherv(local_tokens);
  r.answer_loss.sum = world.sum(loss);
  r.answer_loss.tokens = world.sum(tokens);
  r.correct = world.sum(correct);
  r.samples = world.sum(static_cast<std::int64_t>(set.size()));
  return r;
}

}  // namespace flowlm::train
