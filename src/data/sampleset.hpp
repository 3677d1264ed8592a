// Sample sets for fine-tuning and evaluation (DESIGN.md "Data formats"): prompt/answer
// samples tokenized as [EOT] prompt answer [EOT] and stored in one HDF5 file:
//   tokens        int32 (or uint16), all samples concatenated
//   offsets       int64 [N+1], sample i is tokens[offsets[i], offsets[i+1])
//   answer_start  int64 [N], position WITHIN sample i of its first answer token
//   attrs         format_version, kind = "sample_set", vocab_size, tokenizer, n_samples,
//                 fingerprint (FNV-1a 64 of tokens, offsets and answer_start, 16 hex digits),
//                 block_size, truncated, dropped, sources
// The leading EOT mirrors pretraining documents (every prompt follows an end-of-text) and
// gives an empty prompt a token to predict the answer from. The model sees inputs
// tokens[0, n-1) and targets tokens[1, n); target position t counts for the loss when
// t + 1 >= answer_start, so the answer and its closing EOT are learned and the prompt is not.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "core/types.hpp"
#include "data/loader.hpp"
#include "data/tokenizer.hpp"

namespace flowlm::data {

/// \brief Sample sets this flowlm writes and reads.
constexpr std::int64_t kSampleSetFormatVersion = 1;

/// \brief One prompt/answer pair as text.
struct PromptAnswer {
  std::string prompt;
  std::string answer;
};

/// \brief What to do with a sample whose model input exceeds block_size tokens.
enum class Overlong { error, truncate, drop };
/// \brief "error" / "truncate" / "drop" -> Overlong; ConfigError otherwise.
Overlong parse_overlong(const std::string& s);

/// \brief Samples in memory: all of a set, or a contiguous block of it (`first` > 0 or fewer
/// than `total` samples). Indices into the member functions are local (0 .. size()-1).
struct SampleSet {
  std::vector<std::int32_t> tokens;
  std::vector<std::int64_t> offsets{0};  ///< size()+1 entries, offsets[0] = 0 (local)
  std::vector<std::int64_t> answer_start;
  std::int64_t vocab_size = 256;
  std::string tokenizer = "byte";
  std::string fingerprint;  ///< of the whole set (the file's attr), empty until written / read
  std::int64_t first = 0;   ///< global index of local sample 0
  std::int64_t total = 0;   ///< samples in the whole set
  std::int64_t block_size = 0, truncated = 0, dropped = 0;

  index_t size() const { return static_cast<index_t>(answer_start.size()); }
  /// \brief Tokens of sample i (local), EOTs included.
  index_t length(index_t i) const { return offsets[i + 1] - offsets[i]; }
  /// \brief Model input length of sample i: length - 1.
  index_t input_length(index_t i) const { return length(i) - 1; }
  /// \brief Targets that count for the loss: the answer tokens and the closing EOT.
  index_t answer_tokens(index_t i) const { return length(i) - answer_start[i]; }
  const std::int32_t* sample(index_t i) const { return tokens.data() + offsets[i]; }
  /// \brief Longest model input of the samples held.
  index_t max_input_length() const;
  /// \brief Appends a tokenized sample; answer_start is relative to the sample.
  void append(const std::vector<std::int32_t>& sample_tokens, std::int64_t sample_answer_start);
};

/// \brief FNV-1a 64 over tokens (as int32), offsets and answer_start (as int64), hex.
std::string sample_set_fingerprint(const SampleSet& s);

/// \brief Counts of what build_samples kept, truncated and dropped.
struct BuildCounts {
  std::int64_t kept = 0, truncated = 0, dropped = 0;
};

/// \brief Tokenizes pairs into `out` (appending) as [EOT] prompt answer [EOT]. Empty answers
/// are a DataError naming `origin` and the record number; over-long samples follow `overlong`
/// (truncate cuts the answer's tail; a sample with no answer token left is dropped).
BuildCounts build_samples(const std::vector<PromptAnswer>& pairs, const Tokenizer& tok, index_t block_size,
                          Overlong overlong, const std::string& origin, SampleSet& out);

/// \brief Reads `{prompt_field: ..., answer_field: ...}` records, one JSON object per line
/// (blank lines skipped). DataError naming file:line for malformed JSON, a missing field or a
/// non-string value; IoError when the file cannot be read.
std::vector<PromptAnswer> read_jsonl(const std::filesystem::path& file, const std::string& prompt_field,
                                     const std::string& answer_field);
/// \brief Writes records as JSONL with the given field names (rank-local; IoError on failure).
void write_jsonl(const std::filesystem::path& file, const std::vector<PromptAnswer>& pairs,
                 const std::string& prompt_field = "prompt", const std::string& answer_field = "answer");

/// \brief Writes a whole in-memory set (first == 0) on this rank; computes and stores the
/// fingerprint (also set in `s`). tokens are stored as uint16 when vocab_size <= 65536.
void write_sample_set(const std::filesystem::path& path, SampleSet& s, const std::string& sources = "");

/// \brief Header of a sample set file: counts and attrs without the tokens.
struct SampleSetInfo {
  std::filesystem::path path;
  std::int64_t n_samples = 0, vocab_size = 0, block_size = 0;
  std::string tokenizer, fingerprint;
};
/// \brief Opens and validates a sample set's header (kind, format_version, dataset shapes).
SampleSetInfo read_sample_set_info(const std::filesystem::path& path);

/// \brief Reads samples [first, first + count) (count < 0: to the end) and validates them:
/// offsets increasing, 1 <= answer_start < length, tokens < vocab_size. IoError / DataError
/// naming the file, the dataset and the sample.
SampleSet read_sample_set(const std::filesystem::path& path, std::int64_t first = 0, std::int64_t count = -1);

/// \brief The contiguous block [first, first + count) of n items that rank `rank` of `world`
/// takes: sizes differ by at most one, rank 0 first.
std::pair<std::int64_t, std::int64_t> rank_block(std::int64_t n, int rank, int world);

/// \brief A padded batch of samples: inputs/targets [B, T] (EOT padding), mask [B, T] with 1
/// on answer targets. T = the longest input among the samples (or `min_T` if larger).
struct PaddedBatch {
  index_t B = 0, T = 0;
  std::vector<std::int32_t> inputs, targets;
  std::vector<float> mask;
};
/// \brief Packs local samples `ids` of `set` into `out` (buffers grow, never shrink).
void pack_samples(const SampleSet& set, const std::vector<index_t>& ids, PaddedBatch& out, index_t min_T = 0);

/// \brief Training order over a sample set: each epoch a seeded permutation of the samples
/// (epoch_permutation); a step takes `global_batch` consecutive positions of that stream, and
/// rank r of P takes in micro-step m of A = global_batch / (P * micro_batch) the positions
/// step_start + (m * P + r) * micro_batch ... + micro_batch - 1 (as TokenLoader).
class SampleLoader {
 public:
  SampleLoader(index_t n_samples, index_t global_batch, index_t micro_batch, int rank, int world,
               std::uint64_t seed, bool shuffle);
  index_t grad_accum_steps() const { return accum_; }
  /// \brief Global sample indices of the whole current step (every rank's), in stream order.
  std::vector<index_t> step_samples() const;
  /// \brief Global sample indices this rank reads in micro-step m of the current step.
  std::vector<index_t> micro_batch_samples(index_t m) const;
  index_t sample_at(std::int64_t position) const;
  void advance_step() { cursor_.position += global_batch_; }
  LoaderCursor cursor() const { return cursor_; }
  void restore(LoaderCursor c);

 private:
  index_t n_, global_batch_, micro_batch_, accum_;
  int rank_, world_;
  std::uint64_t seed_;
  bool shuffle_;
  LoaderCursor cursor_;
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<index_t> cached_perm_;
};

/// \brief `prepare` for JSONL: every input file's records (files sorted, globs expanded) go
/// into one sample set; the first floor(val_fraction * n) records into `<name>_val.h5`, the
/// rest into `<name>_train.h5`. Rank 0 works, the others wait; every rank throws on failure.
struct SamplePrepareOptions {
  std::vector<std::string> inputs;
  std::filesystem::path output_dir;
  std::string name = "data";
  std::string tokenizer = "byte";
  double val_fraction = 0.0;
  std::string prompt_field = "prompt", answer_field = "answer";
  index_t block_size = 256;
  Overlong overlong = Overlong::error;
};
struct SamplePrepareSummary {
  std::int64_t records = 0, train_samples = 0, val_samples = 0, truncated = 0, dropped = 0;
};
SamplePrepareSummary prepare_sample_sets(const SamplePrepareOptions& opts, const comm::Communicator& world);

}  // namespace flowlm::data
