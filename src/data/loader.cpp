#include "data/loader.hpp"

#include <algorithm>
#include <random>
#include <utility>

#include "core/error.hpp"

namespace flowlm::data {
namespace fs = std::filesystem;

namespace {

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// Uniform in [0, range) by rejection, so the result is the same with every standard library
/// (std::uniform_int_distribution's algorithm is implementation-defined).
std::uint64_t bounded(std::mt19937_64& rng, std::uint64_t range) {
  const std::uint64_t threshold = (0 - range) % range;  // 2^64 mod range
  for (;;) {
    const std::uint64_t x = rng();
    if (x >= threshold) return x % range;
  }
}

}  // namespace

std::vector<index_t> epoch_permutation(index_t n, std::uint64_t seed, std::int64_t epoch) {
  std::vector<index_t> perm(static_cast<std::size_t>(n));
  for (index_t i = 0; i < n; ++i) perm[static_cast<std::size_t>(i)] = i;
  // Mixing (not adding) seed and epoch keeps (seed 1, epoch 0) apart from (seed 0, epoch 1).
  std::mt19937_64 rng(splitmix64(seed ^ splitmix64(static_cast<std::uint64_t>(epoch))));
  for (index_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<index_t>(bounded(rng, static_cast<std::uint64_t>(i) + 1));
    std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
  }
  return perm;
}

// ---- TokenDataset ---------------------------------------------------------------------

TokenDataset::TokenDataset(std::vector<fs::path> files, index_t T, index_t vocab_size) : T_(T) {
  if (files.empty()) fail<ConfigError>("no token shard files were given (check data.train / data.val)");
  if (T < 1) fail<ConfigError>("seq_len = {} must be at least 1", T);
  shards_.reserve(files.size());
  offsets_.reserve(files.size() + 1);
  offsets_.push_back(0);
  for (auto& f : files) {
    shards_.emplace_back(std::move(f), vocab_size);
    const index_t n = shards_.back().size();
    n_tokens_ += n;
    offsets_.push_back(offsets_.back() + (n >= T + 1 ? (n - 1) / T : 0));
  }
}

std::string TokenDataset::file_list() const {
  std::string s;
  for (std::size_t i = 0; i < shards_.size(); ++i) {
    if (i == 4 && shards_.size() > 5) return s + fmt::format(", ... ({} files)", shards_.size());
    s += (i ? ", " : "") + shards_[i].path().string();
  }
  return s;
}

std::pair<std::size_t, index_t> TokenDataset::locate(index_t index) const {
  if (index < 0 || index >= n_windows())
    fail<DataError>("window {} is out of range: {} has {} windows of {} tokens", index, file_list(),
                    n_windows(), T_ + 1);
  const auto it = std::upper_bound(offsets_.begin(), offsets_.end(), index);
  const auto shard = static_cast<std::size_t>(it - offsets_.begin() - 1);
  return {shard, (index - offsets_[shard]) * T_};
}

void TokenDataset::load_window(index_t index, std::int32_t* inputs, std::int32_t* targets) const {
  const auto [shard, start] = locate(index);
  const std::uint16_t* tok = shards_[shard].tokens() + start;
  for (index_t t = 0; t < T_; ++t) {
    inputs[t] = tok[t];
    targets[t] = tok[t + 1];
  }
}

std::vector<index_t> TokenDataset::val_windows(int rank, int world, index_t max_windows) const {
  if (world < 1 || rank < 0 || rank >= world) fail<Error>("val_windows: bad rank {} of {}", rank, world);
  const index_t n = max_windows > 0 ? std::min(max_windows, n_windows()) : n_windows();
  const index_t begin = n * rank / world, end = n * (rank + 1) / world;
  std::vector<index_t> out;
  out.reserve(static_cast<std::size_t>(end - begin));
  for (index_t i = begin; i < end; ++i) out.push_back(i);
  return out;
}

// ---- TokenLoader ----------------------------------------------------------------------

TokenLoader::TokenLoader(std::vector<fs::path> files, index_t T, index_t vocab_size, index_t global_batch,
                         index_t micro_batch, int rank, int world, std::uint64_t seed, bool shuffle)
    : data_(std::move(files), T, vocab_size),
      global_batch_(global_batch),
      micro_batch_(micro_batch),
      accum_(0),
      rank_(rank),
      world_(world),
      seed_(seed),
      shuffle_(shuffle) {
  if (world < 1 || rank < 0 || rank >= world) fail<Error>("TokenLoader: bad rank {} of {}", rank, world);
  if (global_batch < 1 || micro_batch < 1)
    fail<ConfigError>("train.global_batch = {} and train.micro_batch = {} must both be at least 1",
                      global_batch, micro_batch);
  const index_t per_micro = micro_batch * world;
  if (global_batch % per_micro != 0)
    fail<ConfigError>(
        "train.global_batch = {} is not a multiple of train.micro_batch ({}) x ranks ({}) = {}; choose a "
        "global_batch divisible by {}",
        global_batch, micro_batch, world, per_micro, per_micro);
  accum_ = global_batch / per_micro;
  if (data_.n_windows() < 1)
    fail<DataError>(
        "{}: {} tokens give no window of seq_len + 1 = {} tokens inside one shard; use more data "
        "or a shorter seq_len",
        data_.file_list(), data_.n_tokens(), T + 1);
}

const std::vector<index_t>& TokenLoader::permutation(std::int64_t epoch) const {
  for (std::size_t s = 0; s < cached_epoch_.size(); ++s)
    if (cached_epoch_[s] == epoch) return cached_perm_[s];
  const std::size_t s = next_slot_;
  next_slot_ = (next_slot_ + 1) % cached_epoch_.size();
  cached_perm_[s] = epoch_permutation(n_windows(), seed_, epoch);
  cached_epoch_[s] = epoch;
  return cached_perm_[s];
}

index_t TokenLoader::window_at(std::int64_t position) const {
  if (position < 0) fail<DataError>("loader position {} is negative", position);
  const index_t n = n_windows();
  const index_t i = position % n;
  return shuffle_ ? permutation(position / n)[static_cast<std::size_t>(i)] : i;
}

std::vector<index_t> TokenLoader::micro_batch_windows(index_t m) const {
  if (m < 0 || m >= accum_) fail<Error>("micro-step {} is out of range (grad_accum_steps = {})", m, accum_);
  const std::int64_t first = cursor_.position + (m * world_ + rank_) * micro_batch_;
  std::vector<index_t> out(static_cast<std::size_t>(micro_batch_));
  for (index_t b = 0; b < micro_batch_; ++b) out[static_cast<std::size_t>(b)] = window_at(first + b);
  return out;
}

void TokenLoader::load_micro_batch(index_t m, std::int32_t* inputs, std::int32_t* targets) const {
  const auto windows = micro_batch_windows(m);
  const index_t T = data_.seq_len();
  for (std::size_t b = 0; b < windows.size(); ++b)
    data_.load_window(windows[b], inputs + static_cast<index_t>(b) * T,
                      targets + static_cast<index_t>(b) * T);
}

void TokenLoader::restore(LoaderCursor c) {
  if (c.position < 0)
    fail<DataError>("saved data_cursor {} is negative; the checkpoint is corrupt", c.position);
  cursor_ = c;
}

}  // namespace flowlm::data
