#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "comm/comm.hpp"
#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "support/testing.hpp"

namespace fs = std::filesystem;
using flowlm::IoError;
using flowlm::Shape;
using flowlm::Tensor;
using flowlm::comm::Communicator;
using namespace flowlm::io;

namespace {

/// What tensor k holds: distinct for every (k, i), computable on every rank.
float value(int k, flowlm::index_t i) { return static_cast<float>(k * 10007 + i) * 0.37f - 5.0f; }

Shape shape_of(int k) {
  switch (k % 4) {
    case 0:
      return {17, 5};
    case 1:
      return {33};
    case 2:
      return {3, 4, 7};
    default:
      return {1000 + k, 3};
  }
}

/// Tensors spread round-robin over the ranks (or all on rank 0); only owners hold data.
struct Spread {
  std::vector<std::vector<float>> bufs;
  std::vector<TensorRef> model, optim;

  Spread(int n_model, int n_optim, bool round_robin, const Communicator& world) {
    for (int k = 0; k < n_model + n_optim; ++k) {
      const Shape s = shape_of(k);
      const int owner = round_robin ? k % world.size() : 0;
      std::vector<float> b;
      if (owner == world.rank()) {
        b.resize(static_cast<std::size_t>(flowlm::shape_numel(s)));
        for (std::size_t i = 0; i < b.size(); ++i) b[i] = value(k, static_cast<flowlm::index_t>(i));
      }
      bufs.push_back(std::move(b));
      const float* data = owner == world.rank() ? bufs.back().data() : nullptr;
      if (k < n_model)
        model.push_back(TensorRef{"transformer.h." + std::to_string(k) + ".w", s, data, owner});
      else
        optim.push_back(TensorRef{"m/transformer.h." + std::to_string(k) + ".w", s, data, owner});
    }
  }
};

void expect_contents(const fs::path& p, const Spread& sp) {
  const CheckpointReader r(p);
  int k = 0;
  for (const auto* group : {"model", "optim"}) {
    const auto& refs = std::string(group) == "model" ? sp.model : sp.optim;
    ASSERT_EQ(r.tensors(group).size(), refs.size());
    for (const auto& t : refs) {
      std::vector<float> got(static_cast<std::size_t>(flowlm::shape_numel(t.shape)), -1.0f);
      r.read(group, t.name, t.shape, got.data());
      std::size_t bad = 0;
      for (std::size_t i = 0; i < got.size(); ++i) bad += got[i] != value(k, static_cast<flowlm::index_t>(i));
      EXPECT_EQ(bad, 0u) << t.name << " (owner " << t.owner << ")";
      ++k;
    }
  }
}

CheckpointMeta meta_for(const Communicator& world) {
  CheckpointMeta m;
  // Only rank 0's meta counts; other ranks pass garbage on purpose.
  m.step = world.is_root() ? 500 : -1;
  m.tokens_seen = 1 << 20;
  m.world_size = world.size();
  m.config_toml = world.is_root() ? "[train]\nsteps = 500\n" : "";
  m.rng_state = "state";
  m.data_cursor = {world.is_root() ? 7 : 0, 8};
  if (world.is_root()) m.extra["kind"] = "train";
  return m;
}

}  // namespace

TEST(CheckpointMpi, RoundRobinOwnersEveryRankReadsEveryTensor) {
  const auto world = Communicator::world();
  for (const auto strategy : {WriteStrategy::automatic, WriteStrategy::funnel}) {
    flowlm::testing::TempDir dir("flowlm-ckpt-mpi", /*shared=*/true);
    const Spread sp(7, 5, /*round_robin=*/true, world);
    const fs::path p = dir / checkpoint_name(500);
    write_checkpoint(p, meta_for(world), sp.model, sp.optim, world, strategy);
    expect_contents(p, sp);
    const CheckpointReader r(p);
    EXPECT_EQ(r.meta().step, 500);
    EXPECT_EQ(r.meta().config_toml, "[train]\nsteps = 500\n");
    EXPECT_EQ(r.meta().data_cursor, (std::vector<std::int64_t>{7, 8}));
    EXPECT_EQ(r.meta().world_size, world.size());
    EXPECT_EQ(r.meta().extra.at("kind"), "train");
    EXPECT_FALSE(fs::exists(dir / (checkpoint_name(500) + ".tmp")));
  }
}

// The averaging job's writes: tensors produced on their owners in chunks of whole rows (here about
// 10 elements: several rows, one row, or one row larger than the chunk), each chunk written before
// the next is asked for; a scalar and an empty tensor too.
TEST(CheckpointMpi, StreamedRowChunksComeInOrderFromTheirOwners) {
  const auto world = Communicator::world();
  const std::vector<Shape> shapes{{17, 5}, {33}, {3, 4, 7}, {1003, 3}, {}, {0, 3}};
  constexpr flowlm::index_t kChunk = 10;
  for (const auto strategy : {WriteStrategy::automatic, WriteStrategy::funnel}) {
    flowlm::testing::TempDir dir("flowlm-ckpt-mpi", /*shared=*/true);
    std::vector<TensorRef> refs;
    for (std::size_t k = 0; k < shapes.size(); ++k)
      refs.push_back({"t" + std::to_string(k), shapes[k], nullptr, static_cast<int>(k) % world.size()});
    std::vector<flowlm::index_t> next_row(shapes.size(), 0);  // per tensor: the row the next call starts at
    std::size_t bad_calls = 0;
    const RowProducer produce = [&](std::size_t k, flowlm::index_t first, flowlm::index_t rows, float* out) {
      const Shape& s = shapes[k];
      const flowlm::index_t row = s.empty() ? 1 : flowlm::shape_numel(s) / s[0];
      bad_calls += refs[k].owner != world.rank() || first != next_row[k] || rows < 1 ||
                   (rows > 1 && rows * row > kChunk);
      next_row[k] = first + rows;
      for (flowlm::index_t e = 0; e < rows * row; ++e) out[e] = value(static_cast<int>(k), first * row + e);
    };
    const fs::path p = dir / "streamed.h5";
    write_checkpoint_streamed(p, meta_for(world), refs, produce, kChunk, world, strategy);
    EXPECT_EQ(bad_calls, 0u);
    for (std::size_t k = 0; k < shapes.size(); ++k) {
      if (refs[k].owner != world.rank()) continue;
      EXPECT_EQ(next_row[k], shapes[k].empty() ? 1 : shapes[k][0]) << "tensor " << k << " not produced whole";
    }
    const CheckpointReader r(p);
    for (std::size_t k = 0; k < shapes.size(); ++k) {
      const Tensor t = r.read("model", refs[k].name);
      EXPECT_EQ(t.shape, shapes[k]);
      std::size_t bad = 0;
      for (std::size_t i = 0; i < t.data.size(); ++i)
        bad += t.data[i] != value(static_cast<int>(k), static_cast<flowlm::index_t>(i));
      EXPECT_EQ(bad, 0u) << refs[k].name;
    }
    EXPECT_FALSE(fs::exists(dir / "streamed.h5.tmp"));
  }
}

// ZeRO-1 optimizer state: each rank holds some rows of a tensor (some ranks none); the file holds
// the whole tensors, read back whole or by rows, with either write strategy.
TEST(CheckpointMpi, RowPartsFromEveryRankMakeWholeTensors) {
  const auto world = Communicator::world();
  const int n = world.size(), me = world.rank();
  const std::vector<Shape> shapes = {{10, 3}, {7}, {}, {2, 2, 5}, {1, 4}};
  for (const auto strategy : {WriteStrategy::automatic, WriteStrategy::funnel}) {
    flowlm::testing::TempDir dir("flowlm-ckpt-parts", /*shared=*/true);
    std::vector<std::vector<float>> bufs;
    std::vector<TensorRef> optim;
    const std::vector<TensorRef> model = {{"w", {4}, nullptr, 0}};
    const std::vector<float> w = {1, 2, 3, 4};
    std::vector<TensorRef> model_refs = model;
    model_refs[0].data = w.data();
    for (std::size_t k = 0; k < shapes.size(); ++k) {
      const Shape& s = shapes[k];
      const flowlm::index_t rows = s.empty() ? 1 : s[0], row = s.empty() ? 1 : flowlm::shape_numel(s) / s[0];
      // Rank r holds rows [r * rows / n, (r + 1) * rows / n): uneven, and empty for some ranks.
      const flowlm::index_t first = me * rows / n, last = (me + 1) * rows / n;
      std::vector<float> b(static_cast<std::size_t>((last - first) * row));
      for (std::size_t i = 0; i < b.size(); ++i)
        b[i] = value(static_cast<int>(k), first * row + static_cast<flowlm::index_t>(i));
      bufs.push_back(std::move(b));
      optim.push_back(TensorRef{"m/t" + std::to_string(k), s, last > first ? bufs.back().data() : nullptr,
                                kRowParts, first, last - first});
    }
    const fs::path p = dir / checkpoint_name(3);
    write_checkpoint(p, meta_for(world), model_refs, optim, world, strategy);
    const CheckpointReader r(p);
    for (std::size_t k = 0; k < shapes.size(); ++k) {
      std::vector<float> got(static_cast<std::size_t>(flowlm::shape_numel(shapes[k])), -1.0f);
      r.read("optim", optim[k].name, shapes[k], got.data());
      for (std::size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], value(static_cast<int>(k), static_cast<flowlm::index_t>(i)))
            << optim[k].name << "[" << i << "]";
    }
    // Rows read back into the part a rank holds (what a resume at this rank count reads).
    std::vector<float> rows(6, -1.0f);
    r.read_rows("optim", "m/t0", {10, 3}, 8, 2, rows.data());
    for (std::size_t i = 0; i < rows.size(); ++i)
      EXPECT_EQ(rows[i], value(0, 24 + static_cast<flowlm::index_t>(i)));
    EXPECT_THROW(r.read_rows("optim", "m/t0", {10, 3}, 9, 2, rows.data()), IoError);
  }
}

// Parts that leave a gap or overlap are refused on every rank before anything is written.
TEST(CheckpointMpi, RowPartsThatDoNotTileAreRefused) {
  const auto world = Communicator::world();
  flowlm::testing::TempDir dir("flowlm-ckpt-parts", /*shared=*/true);
  const std::vector<float> b(3 * 4, 1.0f);
  const std::vector<float> w = {1};
  const std::vector<TensorRef> model = {{"w", {1}, w.data(), 0}};
  // Every rank claims rows [0, 3) of a 4-row tensor: overlapping at np > 1, short at np 1.
  const std::vector<TensorRef> optim = {{"m/t", {4, 3}, b.data(), kRowParts, 0, 3}};
  const fs::path p = dir / checkpoint_name(4);
  EXPECT_THROW(write_checkpoint(p, meta_for(world), model, optim, world), IoError);
  EXPECT_FALSE(fs::exists(p));
}

TEST(CheckpointMpi, ReplicatedWeightsWrittenByRankZero) {
  const auto world = Communicator::world();
  flowlm::testing::TempDir dir("flowlm-ckpt-mpi", /*shared=*/true);
  const Spread sp(6, 2, /*round_robin=*/false, world);
  const fs::path p = dir / checkpoint_name(1);
  write_checkpoint(p, meta_for(world), sp.model, sp.optim, world);
  expect_contents(p, sp);
  EXPECT_EQ(list_checkpoints(dir.path()).size(), 1u);
}

TEST(CheckpointMpi, FailuresThrowOnEveryRankAndKeepTheOldFile) {
  const auto world = Communicator::world();
  flowlm::testing::TempDir dir("flowlm-ckpt-mpi", /*shared=*/true);
  const Spread sp(5, 3, /*round_robin=*/true, world);
  const fs::path p = dir / checkpoint_name(2);
  write_checkpoint(p, meta_for(world), sp.model, sp.optim, world);

  // Ranks that disagree on the tensor list must not hang in collective HDF5 calls.
  if (world.size() > 1) {
    auto model = sp.model;
    if (world.rank() == world.size() - 1) model[0].shape = {1, 2};
    EXPECT_THROW(write_checkpoint(p, meta_for(world), model, sp.optim, world), IoError);
  }
  // A data pointer missing on one owner is reported everywhere.
  {
    auto model = sp.model;
    model.back().data = nullptr;
    EXPECT_THROW(write_checkpoint(p, meta_for(world), model, sp.optim, world), IoError);
  }
  // Fails inside HDF5 after the tmp file exists: a tensor nested under another tensor.
  for (const auto strategy : {WriteStrategy::automatic, WriteStrategy::funnel}) {
    auto optim = sp.optim;
    const float x[2] = {1, 2};
    optim.push_back(TensorRef{sp.optim[0].name + "/x", {2}, world.rank() == 0 ? x : nullptr, 0});
    EXPECT_THROW(write_checkpoint(p, meta_for(world), sp.model, optim, world, strategy), IoError);
  }
  world.barrier();
  EXPECT_FALSE(fs::exists(dir / (checkpoint_name(2) + ".tmp")));
  expect_contents(p, sp);
}
