// Text generation: batched decoding with a key/value cache (prefill the prompts in one pass, then
// one token per step), greedy or sampled (temperature, top-k, top-p), over the Backend. The
// decoder runs the transformer's blocks from the same tensor table as Transformer::forward, with
// the inference ops of the Backend (rope at positions, cache writes, attention over the cache);
// generate_uncached() is the plain reference that reruns the whole sequence for every token.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "core/types.hpp"
#include "kernels/backend.hpp"
#include "model/transformer.hpp"

namespace flowlm::model {

/// \brief How the next token is chosen from the logits: temperature 0 is greedy (the first
/// maximum); otherwise softmax(logits / temperature), cut to the top_k most likely (0: all),
/// then to the smallest set reaching probability top_p (1: all), drawn from a stream seeded by
/// (seed, stream id of the row), so that a row's tokens do not depend on the batch it runs in.
struct Sampling {
  double temperature = 0.0;
  index_t top_k = 0;
  double top_p = 1.0;
  std::uint64_t seed = 1;
};

/// \brief Options of generate(): at most max_new_tokens per row; a row ends when it emits `eot`
/// (not returned) or when `stop(row, generated)` says so after a token (that token is kept).
struct GenerateOptions {
  index_t max_new_tokens = 64;
  std::optional<std::int32_t> eot;
  Sampling sampling;
  std::function<bool(std::size_t row, const std::vector<std::int32_t>& generated)> stop;
  /// Per-row stream ids for sampling; empty: the row index.
  std::vector<std::uint64_t> streams;
};

/// \brief The next token from one row of logits [V] under `s`; `state` is the row's stream.
std::int32_t choose_token(const float* logits, index_t V, const Sampling& s, std::uint64_t& state);
/// \brief The initial stream state of row stream `id` under seed `seed`.
std::uint64_t sampling_stream(std::uint64_t seed, std::uint64_t id);

/// \brief A key/value cache for up to `max_batch` sequences of up to `capacity` positions, and
/// the activations of one decoding step, allocated on the model's backend.
class Decoder {
 public:
  Decoder(const Transformer& model, index_t max_batch, index_t capacity);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  index_t capacity() const { return capacity_; }
  /// \brief Starts B = prompts.size() sequences (each non-empty): runs the prompts in one pass
  /// (right-padded), filling the cache, and returns the logits [B, V] (host) of each prompt's last
  /// token. DataError when a prompt does not fit the capacity or holds an id outside the vocabulary.
  const std::vector<float>& prefill(const std::vector<std::vector<std::int32_t>>& prompts);
  /// \brief Appends one token to each of the B sequences (tokens [B]) and returns the logits
  /// [B, V] of that position. Rows whose `active` entry is 0 stay where they are (their output is
  /// meaningless); `active` may be empty (all). DataError when an active row is full.
  const std::vector<float>& step(const std::vector<std::int32_t>& tokens,
                                 const std::vector<char>& active = {});
  /// \brief The number of cached positions of each row.
  const std::vector<index_t>& lengths() const { return len_; }

 private:
  struct Impl;
  void run(index_t B, index_t T, const std::vector<std::int32_t>& tokens, const std::vector<index_t>& last);
  index_t max_batch_ = 0, capacity_ = 0;
  std::vector<index_t> len_;
  std::vector<float> logits_;
  std::unique_ptr<Impl> impl_;  // owns the cache even when the constructor throws
};

/// \brief Continues every prompt with a KV cache, in batches of at most `batch` rows. Returns the
/// generated tokens per prompt. With learned positions a prompt plus max_new_tokens must fit the
/// model's block_size (DataError otherwise).
std::vector<std::vector<std::int32_t>> generate(const Transformer& model,
                                                const std::vector<std::vector<std::int32_t>>& prompts,
                                                const GenerateOptions& opt, index_t batch = 16);

/// \brief The same decisions without a cache: one full forward of each row's whole sequence per
/// token (the reference for tests and the benchmark's "before").
std::vector<std::vector<std::int32_t>> generate_uncached(
    Transformer& model, const std::vector<std::vector<std::int32_t>>& prompts, const GenerateOptions& opt);

}  // namespace flowlm::model
