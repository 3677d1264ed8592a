// Fixed-length training windows over token shards, and the distributed loader that hands
// them to ranks so that the data a step sees does not depend on the number of ranks.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "core/types.hpp"
#include "data/shard.hpp"

namespace flowlm::data {

/// \brief Every window of T+1 consecutive tokens in a list of shards. Windows start at
/// multiples of T inside one shard and never cross a shard boundary (a shard's tail that does
/// not fill a window is unused); window indices run over the files in the given order.
class TokenDataset {
 public:
  /// \brief Opens and validates every file (see TokenShard). T >= 1 (ConfigError).
  TokenDataset(std::vector<std::filesystem::path> files, index_t T, index_t vocab_size);

  index_t seq_len() const { return T_; }
  index_t n_windows() const { return offsets_.back(); }
  index_t n_tokens() const { return n_tokens_; }
  const std::vector<TokenShard>& shards() const { return shards_; }
  /// "a.bin, b.bin" (for error messages).
  std::string file_list() const;

  /// \brief Window `index`: inputs[t] = token[start + t], targets[t] = token[start + t + 1],
  /// t < T (each array holds T int32). Throws DataError when index is out of range.
  void load_window(index_t index, std::int32_t* inputs, std::int32_t* targets) const;

  /// \brief (shard number, first token) of window `index`.
  std::pair<std::size_t, index_t> locate(index_t index) const;

  /// \brief The windows rank `rank` of `world` evaluates: the first min(max_windows,
  /// n_windows()) windows in order (all of them when max_windows <= 0), split into contiguous
  /// blocks whose sizes differ by at most one, rank 0 first.
  std::vector<index_t> val_windows(int rank, int world, index_t max_windows = 0) const;

 private:
  std::vector<TokenShard> shards_;
  index_t T_;
  index_t n_tokens_ = 0;
  std::vector<index_t> offsets_;  ///< offsets_[i] = first window index of shard i; back() = total
};

/// \brief Where the loader is: windows consumed by all ranks since the start of training
/// (epoch = position / n_windows). Saved in checkpoints as `data_cursor`.
struct LoaderCursor {
  std::int64_t position = 0;
};

/// \brief The training loader. Each epoch is a seeded permutation of all window indices
/// (mt19937_64 seeded from seed and epoch, with our own Fisher-Yates so that every standard
/// library gives the same order); `shuffle = false` keeps file order. A step consumes
/// `global_batch` consecutive positions of that stream (crossing epochs when needed); rank r of
/// P takes, in micro-step m of A = global_batch / (P * micro_batch), the positions
/// step_start + (m * P + r) * micro_batch ... + micro_batch - 1.
class TokenLoader {
 public:
  TokenLoader(std::vector<std::filesystem::path> files, index_t T, index_t vocab_size, index_t global_batch,
              index_t micro_batch, int rank, int world, std::uint64_t seed, bool shuffle);

  /// \brief A = global_batch / (world * micro_batch).
  index_t grad_accum_steps() const { return accum_; }
  index_t n_windows() const { return data_.n_windows(); }
  index_t tokens_per_step() const { return global_batch_ * data_.seq_len(); }
  index_t micro_batch() const { return micro_batch_; }
  index_t seq_len() const { return data_.seq_len(); }
  const TokenDataset& dataset() const { return data_; }

  /// \brief The window indices this rank reads in micro-step m of the current step.
  std::vector<index_t> micro_batch_windows(index_t m) const;
  /// \brief Fills inputs[micro_batch*T] and targets[micro_batch*T] for micro-step m (< A).
  void load_micro_batch(index_t m, std::int32_t* inputs, std::int32_t* targets) const;
  /// \brief The window index at a stream position (any rank, any step).
  index_t window_at(std::int64_t position) const;

  /// \brief Moves the cursor by global_batch windows (the whole step of all ranks).
  void advance_step() { cursor_.position += global_batch_; }
  LoaderCursor cursor() const { return cursor_; }
  /// \brief Continues from a saved cursor (position >= 0, else DataError).
  void restore(LoaderCursor c);
  /// \brief The epoch the next step starts in.
  std::int64_t epoch() const { return cursor_.position / n_windows(); }

 private:
  const std::vector<index_t>& permutation(std::int64_t epoch) const;

  TokenDataset data_;
  index_t global_batch_, micro_batch_, accum_;
  int rank_, world_;
  std::uint64_t seed_;
  bool shuffle_;
  LoaderCursor cursor_;
  // A step spans at most two epochs when global_batch <= n_windows; keep the last two
  // permutations (not thread-safe: one loader per rank, used from one thread).
  mutable std::array<std::int64_t, 2> cached_epoch_{{-1, -1}};
  mutable std::array<std::vector<index_t>, 2> cached_perm_;
  mutable std::size_t next_slot_ = 0;
};

/// \brief The permutation of [0, n) the loader uses for `epoch` (exposed for tests).
std::vector<index_t> epoch_permutation(index_t n, std::uint64_t seed, std::int64_t epoch);

}  // namespace flowlm::data
