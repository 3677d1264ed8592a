// A deterministic synthetic multi-task corpus of character-level tasks for tests and the
// demo: pretrain on some tasks, fine-tune on another, measure what is retained.
//   copy      "cpy:abc=" -> "abc"        reverse   "rev:abc=" -> "cba"
//   sort      "srt:3141=" -> "1134"      add       "add:47+8=" -> "55"
//   multiply  "mul:47*8=" -> "376"
// Every (task, prompt) belongs to exactly one split, decided by a hash of the prompt, so a
// held-out set never shares a prompt with a training set whatever the seeds.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/types.hpp"
#include "data/sampleset.hpp"

namespace flowlm::data {

/// \brief Which side of the fixed train / held-out partition of prompts to draw from.
enum class Split { train, heldout };

/// \brief Shape of the generated problems.
struct SyntheticOptions {
  index_t min_len = 2, max_len = 5;  ///< string length for copy / reverse / sort
  index_t max_digits = 2;            ///< operand digits for add / multiply (second operand of multiply: 1)
  int heldout_percent = 20;          ///< share of all prompts reserved for Split::heldout
};

/// \brief "copy", "reverse", "sort", "add", "multiply".
const std::vector<std::string>& synthetic_task_names();

/// \brief n samples of `task` from `split`, deterministic in (task, seed, split, options).
/// ConfigError for an unknown task (listing the names) or n < 0.
std::vector<PromptAnswer> synthetic_samples(const std::string& task, index_t n, std::uint64_t seed,
                                            Split split, const SyntheticOptions& opts = {});

/// \brief n_per_task samples of each task, interleaved (task 0, task 1, ..., task 0, ...).
std::vector<PromptAnswer> synthetic_mixture(const std::vector<std::string>& tasks, index_t n_per_task,
                                            std::uint64_t seed, Split split,
                                            const SyntheticOptions& opts = {});

/// \brief A fine-tuning set shaped like real ones: `n_new` training samples of `new_task`
/// with fresh training samples of the `known` tasks (which a pre-trained model already
/// handles) mixed in, one in every `known_every` positions (0: none), the known tasks in
/// turn. Deterministic in `seed`.
std::vector<PromptAnswer> synthetic_finetune_set(const std::string& new_task, index_t n_new,
                                                 const std::vector<std::string>& known, index_t known_every,
                                                 std::uint64_t seed, const SyntheticOptions& opts = {});

/// \brief Pretraining tokens: EOT, then prompt + answer + EOT for each sample (documents
/// separated by end-of-text, as `prepare` writes text files).
std::vector<std::uint16_t> pretraining_tokens(const std::vector<PromptAnswer>& samples, const Tokenizer& tok);

/// \brief Writes pretraining_tokens as an llm.c token shard.
void write_pretraining_shard(const std::filesystem::path& path, const std::vector<PromptAnswer>& samples,
                             const Tokenizer& tok);

/// \brief Tokenizes samples into a sample set and writes it (error on an over-long sample).
SampleSet write_synthetic_sample_set(const std::filesystem::path& path,
                                     const std::vector<PromptAnswer>& samples, const Tokenizer& tok,
                                     index_t block_size);

}  // namespace flowlm::data
