#include "eval/engine.hpp"

#include <algorithm>
#include <numeric>

#include "core/error.hpp"

namespace flowlm::eval {

std::vector<TokenRequest> rolling_windows(const Tokens& tokens, std::int32_t prefix, index_t max_length) {
  std::vector<TokenRequest> out;
  const auto n = static_cast<index_t>(tokens.size());
  if (n == 0) return out;
  const index_t L = max_length;
  auto slice = [&](index_t a, index_t b) { return Tokens(tokens.begin() + a, tokens.begin() + b); };
  // First window: everything up to L tokens, predicted from the prefix token on.
  const index_t first = std::min(L, n);
  out.push_back({Tokens{prefix}, slice(0, first)});
  index_t predicted = first;
  while (predicted < n) {
    const index_t len = std::min(n - predicted, L), end = predicted + len;
    // Context tokens [end - L - 1, end - len) (disjoint from the continuation), continuation [end - len,
    // end).
    out.push_back({slice(end - L - 1, end - len), slice(end - len, end)});
    predicted += len;
  }
  return out;
}

Engine::Engine(model::Transformer& model, index_t micro_batch, const comm::Communicator& world)
    : model_(model), micro_batch_(micro_batch), world_(world) {}

std::vector<std::vector<std::size_t>> Engine::my_batches(const std::vector<index_t>& lengths) const {
  std::vector<std::size_t> order(lengths.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return lengths[a] > lengths[b]; });
  std::vector<std::vector<std::size_t>> mine;
  const auto per = static_cast<std::size_t>(micro_batch_);
  for (std::size_t k = 0, first = 0; first < order.size(); ++k, first += per) {
    if (static_cast<int>(k % static_cast<std::size_t>(world_.size())) != world_.rank()) continue;
    mine.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(first),
                      order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), first + per)));
  }
  return mine;
}

std::vector<LogLik> Engine::loglikelihood(const std::vector<TokenRequest>& reqs) {
  const index_t L = max_length(), V = model_.config().vocab_size;
  // The model input of each request and where its continuation starts in it.
  std::vector<Tokens> inputs(reqs.size());
  std::vector<index_t> lengths(reqs.size()), cont(reqs.size());
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    const TokenRequest& r = reqs[i];
    if (r.context.empty() || r.continuation.empty())
      fail<Error>("loglikelihood request {}: the context and the continuation must not be empty", i);
    if (static_cast<index_t>(r.continuation.size()) > L)
      fail<DataError>("a continuation of {} tokens is longer than the model's block_size {}",
                      r.continuation.size(), L);
    Tokens all = r.context;
    all.insert(all.end(), r.continuation.begin(), r.continuation.end());
    const auto keep = std::min<index_t>(static_cast<index_t>(all.size()), L + 1);
    inputs[i].assign(all.end() - keep, all.end());  // input = these[:-1], targets = these[1:]
    lengths[i] = keep - 1;
    cont[i] = static_cast<index_t>(r.continuation.size());
  }
  std::vector<double> packed;  // (index, logprob, greedy) per request of this rank
  std::vector<std::int32_t> tok, tgt;
  std::vector<float> mask;
  for (const auto& batch : my_batches(lengths)) {
    const auto B = static_cast<index_t>(batch.size());
    const index_t T = lengths[batch[0]];
    tok.assign(static_cast<std::size_t>(B * T), 0);
    tgt.assign(static_cast<std::size_t>(B * T), 0);
    mask.assign(static_cast<std::size_t>(B * T), 0.0f);
    for (index_t b = 0; b < B; ++b) {
      const std::size_t i = batch[static_cast<std::size_t>(b)];
      const Tokens& x = inputs[i];
      const index_t n = lengths[i];
      for (index_t t = 0; t < n; ++t) {
        tok[static_cast<std::size_t>(b * T + t)] = x[static_cast<std::size_t>(t)];
        tgt[static_cast<std::size_t>(b * T + t)] = x[static_cast<std::size_t>(t + 1)];
        if (t >= n - cont[i]) mask[static_cast<std::size_t>(b * T + t)] = 1.0f;
      }
    }
    model_.forward(tok.data(), tgt.data(), mask.data(), B, T, /*training=*/false);
    const float* losses = model_.token_losses();
    const float* logits = model_.logits();
    for (index_t b = 0; b < B; ++b) {
      const std::size_t i = batch[static_cast<std::size_t>(b)];
      double lp = 0;
      bool greedy = true;
      for (index_t t = lengths[i] - cont[i]; t < lengths[i]; ++t) {
        const index_t k = b * T + t;
        lp -= losses[k];
        const float* row = logits + k * V;
        greedy = greedy && std::max_element(row, row + V) - row == tgt[static_cast<std::size_t>(k)];
      }
      packed.insert(packed.end(), {static_cast<double>(i), lp, greedy ? 1.0 : 0.0});
    }
  }
  const std::vector<double> all = world_.allgatherv(packed);
  std::vector<LogLik> out(reqs.size());
  for (std::size_t k = 0; k + 2 < all.size(); k += 3) {
    const auto i = static_cast<std::size_t>(all[k]);
    out[i] = LogLik{all[k + 1], all[k + 2] != 0.0};
  }
  return out;
}

std::vector<Tokens> Engine::generate(const std::vector<Tokens>& prompts, const model::GenerateOptions& opt) {
  std::vector<index_t> lengths(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) lengths[i] = static_cast<index_t>(prompts[i].size());
  std::vector<double> packed;  // (index, n, tokens...) per prompt of this rank
  for (const auto& batch : my_batches(lengths)) {
    std::vector<Tokens> chunk;
    model::GenerateOptions o = opt;
    o.streams.clear();
    for (const std::size_t i : batch) {
      chunk.push_back(prompts[i]);
      o.streams.push_back(opt.streams.empty() ? i : opt.streams[i]);
    }
    if (opt.stop) o.stop = [&](std::size_t row, const Tokens& out) { return opt.stop(batch[row], out); };
    const auto got = model::generate(model_, chunk, o, static_cast<index_t>(chunk.size()));
    for (std::size_t r = 0; r < batch.size(); ++r) {
      packed.push_back(static_cast<double>(batch[r]));
      packed.push_back(static_cast<double>(got[r].size()));
      for (const std::int32_t t : got[r]) packed.push_back(static_cast<double>(t));
    }
  }
  const std::vector<double> all = world_.allgatherv(packed);
  std::vector<Tokens> out(prompts.size());
  for (std::size_t k = 0; k < all.size();) {
    const auto i = static_cast<std::size_t>(all[k]);
    const auto n = static_cast<std::size_t>(all[k + 1]);
    for (std::size_t j = 0; j < n; ++j) out[i].push_back(static_cast<std::int32_t>(all[k + 2 + j]));
    k += 2 + n;
  }
  return out;
}

}  // namespace flowlm::eval
