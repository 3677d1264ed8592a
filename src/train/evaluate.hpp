// Loss evaluation shared by training (validation), the averaging experiments, scoring and eval.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/types.hpp"
#include "data/loader.hpp"
#include "data/sampleset.hpp"
#include "model/checkpoint.hpp"
#include "model/transformer.hpp"

namespace flowlm::train {

/// \brief Sum of per-token losses and the number of tokens they cover.
struct LossSum {
  double sum = 0;
  index_t tokens = 0;
  double mean() const { return tokens > 0 ? sum / static_cast<double>(tokens) : 0.0; }
};

/// \brief Mean next-token loss of `gpt` over the first `max_windows` windows of `data` (all
/// when <= 0), split across the ranks of `world` in contiguous blocks and run forward only in
/// batches of `micro_batch`. Collective; the same windows whatever the rank count.
LossSum evaluate_windows(model::Transformer& gpt, const data::TokenDataset& data, index_t max_windows,
                         index_t micro_batch, const comm::Communicator& world);

/// \brief Checkpoint files from run directories (their step_*.h5, in step order), files and
/// globs, in the order given. IoError naming `key` and the entry for a directory without
/// checkpoints or a path that does not exist.
std::vector<std::filesystem::path> expand_checkpoints(const std::vector<std::string>& specs,
                                                      const std::string& key);

/// \brief Answer loss and exact-match accuracy on a sample set.
struct SampleEval {
  LossSum answer_loss;  ///< over answer tokens (closing EOT included)
  std::int64_t correct = 0, samples = 0;
  /// Per sample of the whole set (every rank's block, in sample order): exact match (0 / 1), summed
  /// answer loss and answer tokens, for paired comparisons between models.
  std::vector<double> sample_correct, sample_loss, sample_tokens;
  double accuracy() const {
    return samples > 0 ? static_cast<double>(correct) / static_cast<double>(samples) : 0;
  }
};

/// \brief Evaluates the samples `set` holds (a block per rank; see data::rank_block): the
/// answer loss, and exact match of greedy decoding from the prompt against the reference
/// answer (closing EOT included; the same verdict as comparing greedy_answers() with the
/// answer, computed from one teacher-forced pass). Collective over `world`: the sums cover
/// every rank's block.
SampleEval evaluate_samples(model::Transformer& gpt, const data::SampleSet& set, index_t micro_batch,
                            const comm::Communicator& world);

/// \brief How greedy_answers decodes: with a key/value cache (model/decode.hpp), or by rerunning the
/// whole sequence for every token (the former path, kept as the reference and for the benchmark).
enum class Decoding { kv_cache, full_rerun };

/// \brief Greedy continuations of local samples `ids` of `set` from their prompts (the tokens
/// before answer_start), at most `max_new[b]` tokens each, stopping after `eot` (which is kept).
/// Forward only. full_rerun keeps the last block_size tokens of a longer sequence; kv_cache needs
/// prompt + answer to fit the block with learned positions (DataError otherwise).
std::vector<std::vector<std::int32_t>> greedy_answers(model::Transformer& gpt, const data::SampleSet& set,
                                                      const std::vector<index_t>& ids,
                                                      const std::vector<index_t>& max_new, std::int32_t eot,
                                                      Decoding decoding = Decoding::kv_cache,
                                                      index_t batch = 16);

}  // namespace flowlm::train
