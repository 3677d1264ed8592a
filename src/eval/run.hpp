// One task on one model: prompts (prompt.hpp), tokenized as lm-eval's HF backend tokenizes them,
// scored by the Engine, reduced to lm-eval's metrics with standard errors (metrics.hpp), with a
// record per item (prompt, log-likelihoods or response, score) for inspection and comparisons.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "data/tokenizer.hpp"
#include "eval/engine.hpp"
#include "eval/metrics.hpp"
#include "eval/task.hpp"

namespace flowlm::eval {

/// \brief What the eval stage sets for every task.
struct RunOptions {
  std::int64_t limit = 0;          ///< first N items only; 0 = all
  std::int64_t num_fewshot = -1;   ///< -1 = the task's
  std::int64_t fewshot_seed = -1;  ///< -1 = the task's
};

/// \brief A task's metrics on one model and the per-item records.
struct TaskResult {
  std::string task;
  TaskKind kind = TaskKind::multiple_choice;
  std::int64_t items = 0, num_fewshot = 0;
  std::vector<Metric> metrics;
  std::vector<nlohmann::json> records;  ///< per item, in item order
};

/// \brief How texts become tokens for a model, as lm-eval's HF backend does: no special tokens
/// except for Gemma (which adds its BOS), an empty context is the prefix token (BOS, else EOS),
/// and a context's trailing whitespace moves to the continuation before context + continuation
/// is encoded whole and split where the context's own tokens end. With `add_bos` every context
/// starts with the prefix token (lm-eval's add_bos_token; for models trained on documents framed
/// by an end-of-text token, as prepare frames them), unless the tokenizer adds its own BOS already.
class TextCodec {
 public:
  TextCodec(const data::Tokenizer& tok, bool add_special, bool add_bos = false);
  /// \brief A text's tokens (a continuation or a document).
  Tokens encode(const std::string& text) const { return tok_.encode(text, add_special_); }
  /// \brief A context's tokens: encode(), after the prefix token with add_bos.
  Tokens encode_context(const std::string& text) const;
  /// \brief lm-eval's _encode_pair (with the empty-context rule of loglikelihood()).
  TokenRequest encode_pair(const std::string& context, const std::string& continuation) const;
  /// \brief Generated tokens as text: special tokens left out, bytes that are not UTF-8 as U+FFFD
  /// (what a Hugging Face tokenizer's decode gives; the byte tokenizer keeps raw bytes).
  std::string text(const Tokens& tokens) const;
  std::int32_t prefix() const { return prefix_; }
  std::int32_t eot() const { return eot_; }
  const data::Tokenizer& tokenizer() const { return tok_; }

 private:
  const data::Tokenizer& tok_;
  bool add_special_, add_bos_;
  std::int32_t prefix_, eot_;
};

/// \brief lm-eval's exact_match for one response and target under `opt` (1 or 0).
double exact_match(const std::string& response, const std::string& target, const ExactMatchOptions& opt);
/// \brief An answer filter applied to a response (lm-eval's regex filter and remove_whitespace).
std::string apply_filter(const AnswerFilter& f, const std::string& response);
/// \brief `response` cut before the first occurrence of each stop string in turn (lm-eval's
/// post-hoc `s.split(term)[0]` over its until list).
std::string cut_at_stops(std::string response, const std::vector<std::string>& until);
/// \brief Python's len(re.split(r"\s+", text)): the word count of lm-eval's word_perplexity.
std::int64_t count_words(const std::string& text);
/// \brief Python's len(str): code points of valid UTF-8 (acc_norm's choice length).
std::int64_t count_chars(const std::string& text);

/// \brief Runs `task` on the engine's model. Collective over the engine's communicator; every rank
/// returns the same result (bitwise, at any rank count).
TaskResult run_task(Engine& engine, const TextCodec& codec, const Task& task, const RunOptions& opt);

/// \brief The tokenizer of a model for tasks: `spec` ("" = the checkpoint's recorded tokenizer, else
/// byte for a 256-token vocabulary; "byte"; or a file / model directory). ConfigError naming `key`
/// when none can be found or its vocabulary does not fit the model's.
std::unique_ptr<data::Tokenizer> tokenizer_for(const std::string& spec,
                                               const std::filesystem::path& checkpoint, index_t model_vocab,
                                               const std::string& key);

}  // namespace flowlm::eval
