// The model side of task evaluation, as lm-eval's HF backend computes it: log-likelihoods of
// continuations given contexts (one forward of (context + continuation)[-(L+1):][:-1] each, L the
// model's block_size) and greedy generation with a KV cache. Requests run in fixed global batches
// (sorted by length, as lm-eval sorts them) dealt round-robin to the ranks, so every request is
// computed identically whatever the rank count; every rank gets every result.
#pragma once

#include <cstdint>
#include <vector>

#include "comm/comm.hpp"
#include "core/types.hpp"
#include "model/decode.hpp"
#include "model/transformer.hpp"

namespace flowlm::eval {

using Tokens = std::vector<std::int32_t>;

/// \brief One loglikelihood request: a non-empty context and a non-empty continuation.
struct TokenRequest {
  Tokens context, continuation;
};

/// \brief The continuation's summed log-probability and whether greedy decoding would produce it.
struct LogLik {
  double logprob = 0;
  bool greedy = false;
};

/// \brief lm-eval's rolling windows of a document (get_rolling_token_windows with context_len 1,
/// then make_disjoint_window): requests whose continuations cover `tokens` exactly once, each one
/// forward of at most `max_length` tokens; the first conditions on `prefix`.
std::vector<TokenRequest> rolling_windows(const Tokens& tokens, std::int32_t prefix, index_t max_length);

/// \brief Runs requests on a model, sharded over `world`.
class Engine {
 public:
  Engine(model::Transformer& model, index_t micro_batch, const comm::Communicator& world);

  /// \brief Log-likelihood of each request (in request order, on every rank). Collective. DataError
  /// when a continuation is longer than the model's block_size.
  std::vector<LogLik> loglikelihood(const std::vector<TokenRequest>& reqs);

  /// \brief The tokens generated from each prompt (in order, on every rank) under `opt`; stop and
  /// streams see indices into `prompts`. Collective.
  std::vector<Tokens> generate(const std::vector<Tokens>& prompts, const model::GenerateOptions& opt);

  model::Transformer& model() { return model_; }
  index_t max_length() const { return model_.config().block_size; }

 private:
  /// The global batches of `lengths` (sorted longest first, ties by index) this rank runs.
  std::vector<std::vector<std::size_t>> my_batches(const std::vector<index_t>& lengths) const;

  model::Transformer& model_;
  index_t micro_batch_;
  comm::Communicator world_;
};

}  // namespace flowlm::eval
