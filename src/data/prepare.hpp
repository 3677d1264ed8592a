// `prepare`: text files -> token shards (llm.c format), or JSONL prompt/answer records -> sample
// sets, with any tokenizer make_tokenizer builds. Work is spread over the ranks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "core/types.hpp"
#include "data/sampleset.hpp"
#include "data/tokenizer.hpp"

namespace flowlm::data {

/// \brief What `prepare` reads and writes (mirrors the job file's [prepare] section).
struct PrepareOptions {
  std::vector<std::string> inputs;          ///< text files or glob patterns; each file is one document
  std::filesystem::path output_dir;         ///< created if missing
  std::string name = "data";                ///< shard prefix: <name>_train_000000.bin, <name>_val_000000.bin
  std::string tokenizer = "byte";           ///< see make_tokenizer
  double val_fraction = 0.1;                ///< in [0, 1): the first part of every document goes to val
  std::int64_t shard_tokens = 100'000'000;  ///< at most this many tokens per shard
};

/// \brief What `prepare` did (the same on every rank).
struct PrepareSummary {
  std::int64_t files = 0;
  std::int64_t bytes = 0;
  std::int64_t tokens = 0;  ///< train_tokens + val_tokens
  std::int64_t train_tokens = 0;
  std::int64_t val_tokens = 0;
  std::int64_t train_shards = 0;
  std::int64_t val_shards = 0;
  std::int64_t vocab_size = 0;  ///< the tokenizer's: set data.vocab_size to at least this
};

/// \brief Shard file name "<name>_<split>_<index:06d>.bin".
std::string shard_file_name(const std::string& name, const std::string& split, std::int64_t index);

/// \brief The special tokens around a document and a sample. `start`: what the tokenizer adds in
/// front at encode time (special_prefix: Llama's <s>, Gemma's <bos>), or the end-of-text token
/// when it adds nothing (byte, GPT-2, Qwen2). `end`: what it adds behind (special_suffix), plus the
/// end-of-text token when `start` is not that token already; a sample always ends with eot().
struct Framing {
  std::vector<TokenId> start, end;
};
Framing framing_of(const Tokenizer& tok);

/// \brief Tokenizes every input file (sorted, globs expanded) as one document, framed as
/// framing_of says ([EOT] text for byte and GPT-2; <s> text </s> for Llama), puts the first
/// floor(val_fraction * n) tokens of each document into val and the rest into train, and writes
/// shards of at most shard_tokens tokens, replacing earlier `<name>_{train,val}_*.bin` shards in
/// output_dir. The files are spread over the ranks in contiguous blocks of about equal bytes;
/// rank 0 then joins the ranks' tokens into the shards, so the output does not depend on the
/// rank count. Rank 0 prints progress (MB/s, ETA) and a summary. Errors, on every rank:
/// ConfigError for bad options or a tokenizer whose ids do not fit uint16 shards, IoError for
/// unreadable inputs or unwritable output, DataError for text the tokenizer rejects.
PrepareSummary prepare_text_shards(const PrepareOptions& opts, const comm::Communicator& world);

/// \brief The Alpaca prompt (as Stanford Alpaca and the FLOW reference write it, no-input form).
extern const char* const kAlpacaTemplate;
/// \brief prepare.template -> the template text: "none" (the prompt as it is), "alpaca", or a
/// literal holding "{prompt}". ConfigError for a literal without it.
std::string prompt_template(const std::string& spec);
/// \brief The template with every "{prompt}" replaced by `prompt`.
std::string apply_prompt_template(const std::string& tmpl, const std::string& prompt);

/// \brief `prepare` for JSONL prompt/answer records.
struct JsonlPrepareOptions {
  std::vector<std::string> inputs;
  std::filesystem::path output_dir;
  std::string name = "data";
  std::string tokenizer = "byte";
  std::string prompt_template = "none";  ///< see prompt_template()
  double val_fraction = 0.0;
  std::string prompt_field = "prompt", answer_field = "answer";
  index_t block_size = 256;
  Overlong overlong = Overlong::error;
};
struct JsonlPrepareSummary {
  std::int64_t records = 0, train_samples = 0, val_samples = 0, truncated = 0, dropped = 0, vocab_size = 0;
};

/// \brief One sample: start + tokens(template(prompt)) + tokens(answer) + end (framing_of; byte:
/// [EOT] prompt answer [EOT]); answer_start = where the answer begins. An over-long sample
/// follows `overlong` (truncate cuts the answer's tail; nothing left of it: dropped). Returns
/// false when dropped. DataError (naming `origin`) for an empty answer or, with
/// Overlong::error, a sample over block_size.
bool build_sample(const Tokenizer& tok, const Framing& fr, const std::string& tmpl, const PromptAnswer& pa,
                  index_t block_size, Overlong overlong, const std::string& origin,
                  std::vector<std::int32_t>& tokens, std::int64_t& answer_start, bool& truncated);

/// \brief Every input file's records (files sorted, globs expanded) into `<name>_train.h5` and,
/// for the first floor(val_fraction * n) records, `<name>_val.h5`. Records are tokenized by the
/// ranks in contiguous blocks; rank 0 writes the sets (the same files at any rank count).
JsonlPrepareSummary prepare_jsonl_sample_sets(const JsonlPrepareOptions& opts,
                                              const comm::Communicator& world);

}  // namespace flowlm::data
