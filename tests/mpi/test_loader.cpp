// The loader's data must not depend on the number of ranks: at np 1/2/4 the windows the
// ranks read in a step are exactly the step's windows as one rank computes them.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "comm/comm.hpp"
#include "core/error.hpp"
#include "data/loader.hpp"
#include "data/prepare.hpp"
#include "data/shard.hpp"
#include "support/testing.hpp"

using flowlm::index_t;
using flowlm::comm::Communicator;
namespace data = flowlm::data;
namespace fs = std::filesystem;

namespace {

constexpr index_t kT = 16;
constexpr index_t kVocab = 251;

/// Rank 0 writes four shards into a directory every rank sees; returns their sorted paths.
std::vector<fs::path> make_shards(const flowlm::testing::TempDir& dir, const Communicator& world) {
  if (world.is_root()) {
    std::mt19937 rng(123);
    const std::size_t lens[] = {300, 17, 1000, 129};
    for (std::size_t i = 0; i < 4; ++i) {
      std::vector<std::uint16_t> tok(lens[i]);
      for (auto& t : tok) t = static_cast<std::uint16_t>(rng() % kVocab);
      data::write_shard(dir / ("part_" + std::to_string(i) + ".bin"), tok);
    }
  }
  world.barrier();
  return data::expand_paths({(dir / "part_*.bin").string()});
}

/// A checksum of a window's content that tells windows apart (position-weighted).
double checksum(const std::int32_t* in, const std::int32_t* tg, index_t T) {
  double s = 0;
  for (index_t t = 0; t < T; ++t)
    s += static_cast<double>((t + 1) * in[t]) + 1e-3 * static_cast<double>(tg[t]);
  return s;
}

}  // namespace

TEST(Loader, StepWindowsDoNotDependOnRanks) {
  const auto world = Communicator::world();
  flowlm::testing::TempDir dir("loader", true);
  const auto files = make_shards(dir, world);
  const int P = world.size();
  const index_t micro = 2, global = 8 * micro;  // global divisible by P * micro for P in 1, 2, 4
  data::TokenLoader ld(files, kT, kVocab, global, micro, world.rank(), P, 99, true);
  data::TokenLoader ref(files, kT, kVocab, global, global, 0, 1, 99, true);  // one rank, one micro-step
  ASSERT_EQ(ld.grad_accum_steps(), global / (P * micro));
  ASSERT_EQ(ld.n_windows(), (299 / kT) + 1 + (999 / kT) + (128 / kT));
  std::vector<std::int32_t> in(micro * kT), tg(micro * kT), rin(global * kT), rtg(global * kT);

  for (int step = 0; step < 12; ++step) {  // 12 steps x 16 windows cross epoch boundaries (89 windows)
    std::vector<double> mine_idx, mine_sum;
    for (index_t m = 0; m < ld.grad_accum_steps(); ++m) {
      const auto w = ld.micro_batch_windows(m);
      ld.load_micro_batch(m, in.data(), tg.data());
      for (index_t b = 0; b < micro; ++b) {
        mine_idx.push_back(static_cast<double>(w[b]));
        mine_sum.push_back(checksum(in.data() + b * kT, tg.data() + b * kT, kT));
      }
    }
    const auto all_idx = world.allgatherv(mine_idx);
    const auto all_sum = world.allgatherv(mine_sum);
    ASSERT_EQ(all_idx.size(), static_cast<std::size_t>(global));

    const auto expect = ref.micro_batch_windows(0);
    ref.load_micro_batch(0, rin.data(), rtg.data());
    // Union over ranks == the one-rank step, as multisets of (window, checksum).
    std::vector<std::pair<double, double>> got, want;
    for (index_t i = 0; i < global; ++i) {
      got.emplace_back(all_idx[i], all_sum[i]);
      want.emplace_back(static_cast<double>(expect[i]),
                        checksum(rin.data() + i * kT, rtg.data() + i * kT, kT));
    }
    std::sort(got.begin(), got.end());
    std::sort(want.begin(), want.end());
    ASSERT_EQ(got, want) << "step " << step;
    // Within one step (inside one epoch) windows are distinct, so ranks are disjoint.
    const std::int64_t first = ld.cursor().position, last = first + global - 1;
    if (first / ld.n_windows() == last / ld.n_windows()) {
      std::vector<double> idx = all_idx;
      std::sort(idx.begin(), idx.end());
      EXPECT_EQ(std::adjacent_find(idx.begin(), idx.end()), idx.end()) << "step " << step;
    }
    ld.advance_step();
    ref.advance_step();
    EXPECT_EQ(ld.cursor().position, ref.cursor().position);
  }
}

TEST(Loader, ValidationWindowsPartition) {
  const auto world = Communicator::world();
  flowlm::testing::TempDir dir("loader-val", true);
  const auto files = make_shards(dir, world);
  data::TokenDataset ds(files, kT, kVocab);
  for (index_t max : {index_t{0}, index_t{3}, index_t{50}}) {
    const auto mine = ds.val_windows(world.rank(), world.size(), max);
    std::vector<double> d(mine.begin(), mine.end());
    const auto all = world.allgatherv(d);  // rank order: contiguous blocks must concatenate to 0..n-1
    const index_t n = max > 0 ? std::min(max, ds.n_windows()) : ds.n_windows();
    ASSERT_EQ(static_cast<index_t>(all.size()), n);
    for (index_t i = 0; i < n; ++i) EXPECT_EQ(all[i], static_cast<double>(i));
    const auto counts = world.allgather(static_cast<std::int64_t>(mine.size()));
    const auto [lo, hi] = std::minmax_element(counts.begin(), counts.end());
    EXPECT_LE(*hi - *lo, 1);
  }
}

TEST(Prepare, RankZeroWritesAndEveryRankAgrees) {
  const auto world = Communicator::world();
  flowlm::testing::TempDir dir("loader-prepare", true);
  data::PrepareOptions o;
  o.inputs = {(flowlm::testing::source_dir() / "CMakeLists.txt").string()};
  o.output_dir = dir / "out";
  o.name = "p";
  o.val_fraction = 0.1;
  o.shard_tokens = 4096;
  const auto s = data::prepare_text_shards(o, world);
  EXPECT_EQ(s.files, 1);
  EXPECT_EQ(s.tokens, s.bytes + 1);
  EXPECT_EQ(world.min(static_cast<double>(s.tokens)), world.max(static_cast<double>(s.tokens)));
  // Every rank can open what rank 0 wrote as soon as prepare returns.
  const auto train = data::expand_paths({(o.output_dir / "p_train_*.bin").string()});
  EXPECT_EQ(static_cast<std::int64_t>(train.size()), s.train_shards);
  data::TokenDataset ds(train, 64, 256);
  EXPECT_GT(ds.n_windows(), 0);

  // A failure on rank 0 reaches every rank (nobody hangs in a barrier).
  o.inputs = {(dir / "absent.txt").string()};
  EXPECT_THROW(data::prepare_text_shards(o, world), flowlm::Error);
}
