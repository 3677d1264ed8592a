// `prepare`: text files -> byte/BPE tokens -> train/val token shards (llm.c format).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "core/types.hpp"

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
};

/// \brief Shard file name "<name>_<split>_<index:06d>.bin".
std::string shard_file_name(const std::string& name, const std::string& split, std::int64_t index);

/// \brief Tokenizes every input file (sorted, globs expanded) as one document preceded by the
/// end-of-text token, puts the first floor(val_fraction * n) tokens of each document (EOT
/// included) into val and the rest into train, and writes shards of at most shard_tokens
/// tokens, replacing earlier `<name>_{train,val}_*.bin` shards in output_dir. Only rank 0
/// reads and writes; the other ranks wait, and every rank throws if rank 0 failed. Prints a
/// summary through log::info. Errors: ConfigError for bad options, IoError for unreadable
/// inputs or unwritable output, DataError for text the tokenizer rejects.
PrepareSummary prepare_text_shards(const PrepareOptions& opts, const comm::Communicator& world);

}  // namespace flowlm::data
