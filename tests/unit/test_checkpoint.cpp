#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "comm/comm.hpp"
#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "io/hdf5.hpp"
#include "io/inspect.hpp"
#include "support/testing.hpp"

namespace fs = std::filesystem;
using flowlm::IoError;
using flowlm::Shape;
using flowlm::Tensor;
using flowlm::comm::Communicator;
using namespace flowlm::io;

namespace {

Tensor random_tensor(Shape shape, std::uint32_t seed) {
  Tensor t(std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (auto& x : t.data) x = dist(rng);
  return t;
}

struct Fixture {
  std::vector<std::pair<std::string, Tensor>> model, optim;
  CheckpointMeta meta;

  explicit Fixture(std::int64_t step = 1000) {
    model.emplace_back("transformer.wte.weight", random_tensor({11, 8}, 1));
    model.emplace_back("transformer.h.0.attn.c_attn.weight", random_tensor({8, 24}, 2));
    model.emplace_back("transformer.h.0.ln_1.bias", random_tensor({8}, 3));
    model.emplace_back("transformer.h.10.mlp.c_fc.weight", random_tensor({2, 3, 4}, 4));
    model.emplace_back("scalar_thing", random_tensor({}, 5));
    model.emplace_back("empty_thing", Tensor({0, 3}));
    // Values whose bits must survive exactly.
    auto& special = model[2].second.data;
    special[0] = -0.0f;
    special[1] = std::numeric_limits<float>::denorm_min();
    special[2] = std::numeric_limits<float>::max();
    special[3] = std::numeric_limits<float>::quiet_NaN();
    optim.emplace_back("m/transformer.wte.weight", random_tensor({11, 8}, 6));
    optim.emplace_back("v/transformer.wte.weight", random_tensor({11, 8}, 7));
    meta.step = step;
    meta.tokens_seen = 123456789012345;
    meta.world_size = 4;
    meta.config_toml = "[model]\nn_layer = 2\n\n[train]\nlr = 3e-4\n";
    meta.rng_state = "mt19937:12345 67890";
    meta.data_cursor = {5, -1, 1LL << 40};
    meta.extra = {{"kind", "train"}, {"sources", "a.h5,b.h5"}};
  }

  static std::vector<TensorRef> refs(const std::vector<std::pair<std::string, Tensor>>& ts) {
    std::vector<TensorRef> r;
    for (const auto& [n, t] : ts) r.push_back(TensorRef{n, t.shape, t.ptr(), 0});
    return r;
  }
  void write(const fs::path& p, WriteStrategy s = WriteStrategy::automatic) const {
    write_checkpoint(p, meta, refs(model), refs(optim), Communicator::world(), s);
  }
};

/// Runs f, expects an IoError whose message contains every needle.
template <class F>
void expect_io_error(F&& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "expected IoError";
  } catch (const IoError& e) {
    const std::string msg = e.what();
    for (const auto& n : needles)
      EXPECT_NE(msg.find(n), std::string::npos) << "'" << n << "' not in: " << msg;
  }
}

void copy_prefix(const fs::path& from, const fs::path& to, double fraction) {
  std::ifstream in(from, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(to, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size() * fraction));
}

bool any_tmp(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".tmp") return true;
  return false;
}

}  // namespace

TEST(Checkpoint, NameFormat) {
  EXPECT_EQ(checkpoint_name(1000), "step_00001000.h5");
  EXPECT_EQ(checkpoint_name(0), "step_00000000.h5");
  EXPECT_EQ(checkpoint_name(123456789), "step_123456789.h5");
  EXPECT_THROW(checkpoint_name(-1), IoError);
}

TEST(Checkpoint, RoundTripIsBitwiseWithEveryAttribute) {
  for (const auto strategy : {WriteStrategy::automatic, WriteStrategy::funnel}) {
    flowlm::testing::TempDir dir;
    const Fixture fx;
    const fs::path p = dir / checkpoint_name(fx.meta.step);
    fx.write(p, strategy);
    ASSERT_TRUE(fs::exists(p));
    EXPECT_FALSE(any_tmp(dir.path()));

    const CheckpointReader r(p);
    const auto& m = r.meta();
    EXPECT_EQ(m.step, fx.meta.step);
    EXPECT_EQ(m.tokens_seen, fx.meta.tokens_seen);
    EXPECT_EQ(m.world_size, fx.meta.world_size);
    EXPECT_EQ(m.config_toml, fx.meta.config_toml);
    EXPECT_EQ(m.rng_state, fx.meta.rng_state);
    EXPECT_EQ(m.data_cursor, fx.meta.data_cursor);
    EXPECT_EQ(m.extra, fx.meta.extra);
    EXPECT_EQ(r.file().read_attr_int("format_version"), kCheckpointFormatVersion);
    EXPECT_EQ(r.file().read_attr_string("created_by").rfind("flowlm ", 0), 0u);

    for (const auto* group : {"model", "optim"}) {
      const auto& want = std::string(group) == "model" ? fx.model : fx.optim;
      const auto listed = r.tensors(group);
      ASSERT_EQ(listed.size(), want.size()) << group;
      for (std::size_t i = 0; i < want.size(); ++i) {
        EXPECT_EQ(listed[i].first, want[i].first);  // write order, names relative to the group
        EXPECT_EQ(listed[i].second, want[i].second.shape);
        EXPECT_TRUE(r.has(group, want[i].first));
        std::vector<float> got(want[i].second.data.size(), 42.0f);
        r.read(group, want[i].first, want[i].second.shape, got.data());
        EXPECT_TRUE(flowlm::testing::same_bits(got, want[i].second.data)) << want[i].first;
        const Tensor t = r.read(group, want[i].first);
        EXPECT_EQ(t.shape, want[i].second.shape);
        EXPECT_TRUE(flowlm::testing::same_bits(t.data, want[i].second.data)) << want[i].first;
      }
    }
    EXPECT_FALSE(r.has("model", "nope"));
    EXPECT_FALSE(r.has("optim", "m"));  // a group is not a tensor
  }
}

TEST(Checkpoint, EmptyCursorAndStringsRoundTrip) {
  flowlm::testing::TempDir dir;
  Fixture fx;
  fx.meta.data_cursor.clear();
  fx.meta.config_toml.clear();
  fx.meta.extra.clear();
  fx.optim.clear();
  fx.write(dir / "c.h5");
  const CheckpointReader r(dir / "c.h5");
  EXPECT_TRUE(r.meta().data_cursor.empty());
  EXPECT_EQ(r.meta().config_toml, "");
  EXPECT_TRUE(r.meta().extra.empty());
  EXPECT_TRUE(r.tensors("optim").empty());
}

TEST(Checkpoint, OverwriteReplacesAndStaleTmpIsIgnored) {
  flowlm::testing::TempDir dir;
  const fs::path p = dir / "step_00000005.h5";
  Fixture a(5);
  a.write(p);
  std::ofstream(dir / "step_00000005.h5.tmp") << "junk from a crashed writer";
  Fixture b(5);
  b.meta.tokens_seen = 77;
  b.model[0].second.data[0] = 3.5f;
  b.write(p);
  const CheckpointReader r(p);
  EXPECT_EQ(r.meta().tokens_seen, 77);
  EXPECT_EQ(r.read("model", "transformer.wte.weight").data[0], 3.5f);
  EXPECT_FALSE(any_tmp(dir.path()));
}

TEST(Checkpoint, FailedWriteLeavesExistingCheckpointIntact) {
  flowlm::testing::TempDir dir;
  const fs::path p = dir / "step_00000100.h5";
  const Fixture good(100);
  good.write(p);
  const auto world = Communicator::world();

  Fixture bad(200);
  auto model = Fixture::refs(bad.model);
  auto optim = Fixture::refs(bad.optim);
  // Rejected before the file is touched: a bad owner, a negative dimension, a missing buffer.
  model[0].owner = 7;
  expect_io_error([&] { write_checkpoint(p, bad.meta, model, optim, world); }, {p.string(), "owner rank 7"});
  model[0].owner = 0;
  model[1].shape = {8, -24};
  expect_io_error([&] { write_checkpoint(p, bad.meta, model, optim, world); }, {p.string(), "negative"});
  model[1].shape = bad.model[1].second.shape;
  model[1].data = nullptr;
  expect_io_error([&] { write_checkpoint(p, bad.meta, model, optim, world); }, {p.string(), "no data"});
  model[1].data = bad.model[1].second.ptr();
  optim.push_back(optim[0]);
  expect_io_error([&] { write_checkpoint(p, bad.meta, model, optim, world); }, {"twice"});
  optim.pop_back();
  // Fails halfway through the HDF5 write: "m/transformer.wte.weight" is a dataset, so
  // nothing can be nested under it.
  for (const auto s : {WriteStrategy::automatic, WriteStrategy::funnel}) {
    auto optim2 = optim;
    optim2.push_back(TensorRef{"m/transformer.wte.weight/x", {2}, bad.optim[0].second.ptr(), 0});
    expect_io_error([&] { write_checkpoint(p, bad.meta, model, optim2, world, s); },
                    {"step_00000100.h5", "untouched"});
  }
  EXPECT_FALSE(any_tmp(dir.path()));
  const CheckpointReader r(p);
  EXPECT_EQ(r.meta().step, 100);
  std::vector<float> w(good.model[0].second.data.size());
  r.read("model", "transformer.wte.weight", good.model[0].second.shape, w.data());
  EXPECT_EQ(w, good.model[0].second.data);
}

TEST(Checkpoint, BadFilesGiveIoErrorsNamingTheFile) {
  flowlm::testing::TempDir dir;
  const Fixture fx;
  const fs::path good = dir / "good.h5";
  fx.write(good);

  const fs::path missing = dir / "missing.h5";
  expect_io_error([&] { CheckpointReader r(missing); }, {missing.string(), "no such file"});

  const fs::path truncated = dir / "truncated.h5";
  copy_prefix(good, truncated, 0.5);
  expect_io_error([&] { CheckpointReader r(truncated); }, {truncated.string()});

  const fs::path noise = dir / "noise.h5";
  {
    std::mt19937 rng(9);
    std::ofstream out(noise, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>(rng()));
  }
  expect_io_error([&] { CheckpointReader r(noise); }, {noise.string(), "not an HDF5 file"});

  const fs::path foreign = dir / "foreign.h5";
  {
    auto f = h5::File::create(foreign);
    f.write_dataset<float>("/weights", {2, 2}, fx.model[0].second.ptr());
    f.close();
  }
  expect_io_error([&] { CheckpointReader r(foreign); },
                  {foreign.string(), "has no attribute 'format_version': not a flowlm checkpoint"});

  const fs::path partial = dir / "partial.h5";
  {
    auto f = h5::File::create(partial);
    f.write_attr("format_version", std::int64_t{1});
    f.close();
  }
  expect_io_error([&] { CheckpointReader r(partial); }, {partial.string(), "missing attribute 'step'"});

  const fs::path newer = dir / "newer.h5";
  fs::copy_file(good, newer);
  {
    auto f = h5::File::open_rw(newer);
    f.write_attr("format_version", std::int64_t{kCheckpointFormatVersion + 1});
    f.close();
  }
  expect_io_error([&] { CheckpointReader r(newer); }, {newer.string(), "format_version 2", "newer"});

  const CheckpointReader r(good);
  std::vector<float> buf(1000);
  expect_io_error(
      [&] {
        r.read("model", "transformer.wte.weight", {8, 11}, buf.data());
      },
      {good.string(), "/model/transformer.wte.weight", "[11, 8]", "[8, 11]"});
  expect_io_error([&] { r.read("model", "transformer.h.3.attn.bias", {8}, buf.data()); },
                  {good.string(), "/model/transformer.h.3.attn.bias", "missing dataset"});
  expect_io_error([&] { r.read("optim", "nope"); }, {good.string(), "/optim/nope"});
}

TEST(Checkpoint, ListNewestValidAndPrune) {
  flowlm::testing::TempDir dir;
  EXPECT_TRUE(list_checkpoints(dir / "no-such-dir").empty());
  EXPECT_FALSE(newest_valid_checkpoint(dir.path()).has_value());
  for (const std::int64_t step : {30, 10, 20}) Fixture(step).write(dir / checkpoint_name(step));
  std::ofstream(dir / "step_00000040.h5.tmp") << "partial";
  std::ofstream(dir / "notes.txt") << "x";
  std::ofstream(dir / "step_abc.h5") << "x";
  fs::create_directory(dir / "step_00000050.h5");  // a directory, not a checkpoint

  auto all = list_checkpoints(dir.path());
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].first, 10);
  EXPECT_EQ(all[1].first, 20);
  EXPECT_EQ(all[2].first, 30);
  EXPECT_EQ(all[2].second.filename(), "step_00000030.h5");
  EXPECT_EQ(newest_valid_checkpoint(dir.path()), dir / "step_00000030.h5");

  // A damaged newest checkpoint is skipped.
  const fs::path newest = dir / "step_00000030.h5";
  const fs::path copy = dir / "copy";
  fs::copy_file(newest, copy);
  copy_prefix(copy, newest, 0.5);
  EXPECT_EQ(newest_valid_checkpoint(dir.path()), dir / "step_00000020.h5");

  prune_checkpoints(dir.path(), 2);
  all = list_checkpoints(dir.path());
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first, 20);
  EXPECT_EQ(all[1].first, 30);
  EXPECT_TRUE(fs::exists(dir / "notes.txt"));
  EXPECT_TRUE(fs::exists(dir / "step_00000040.h5.tmp"));
  prune_checkpoints(dir.path(), 0);  // keeps everything
  EXPECT_EQ(list_checkpoints(dir.path()).size(), 2u);
  prune_checkpoints(dir.path(), 1);
  all = list_checkpoints(dir.path());
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].first, 30);
}

TEST(Hdf5, GenericDatasetsAndAttributes) {
  flowlm::testing::TempDir dir;
  const fs::path p = dir / "samples.h5";
  const std::vector<std::uint16_t> tokens = {1, 2, 65535, 7, 8, 9};
  const std::vector<std::int64_t> offsets = {0, 2, 6};
  const std::vector<double> weights = {0.5, 1.5};
  {
    auto f = h5::File::create(p);
    f.write_dataset("tokens", tokens);
    f.write_dataset("/nested/deeper/offsets", offsets);
    f.write_dataset("weights", weights);
    auto d = f.create_dataset<float>("grid", {3, 2});
    const float rows01[] = {1, 2, 3, 4};
    const float row2[] = {5, 6};
    d.write_rows(0, 2, rows01);
    d.write_rows(2, 1, row2);
    EXPECT_THROW(d.write_rows(2, 2, row2), IoError);
    f.write_attr("vocab_size", std::int64_t{50257});
    f.write_attr("tokenizer", "gpt2");
    f.write_attr("tau", 0.25);
    f.write_attr("ids", std::vector<std::int64_t>{3, 4, 5});
    f.write_attr("qs", std::vector<double>{0.1, 0.9});
    f.write_attr("note", "on a dataset", "/tokens");
    f.write_attr("tokenizer", "byte");  // replaces
    f.close();
  }
  const auto f = h5::File::open(p);
  EXPECT_EQ(f.read_dataset<std::uint16_t>("tokens"), tokens);
  const auto as_i32 = f.read_dataset<std::int32_t>("tokens");  // converted on read
  EXPECT_EQ(as_i32[2], 65535);
  Shape shape;
  EXPECT_EQ(f.read_dataset<std::int64_t>("nested/deeper/offsets", &shape), offsets);
  EXPECT_EQ(shape, Shape{3});
  EXPECT_EQ(f.read_dataset<double>("weights"), weights);
  const auto grid = f.open_dataset("grid");
  EXPECT_EQ(grid.dtype(), h5::DType::f32);
  EXPECT_EQ(grid.read<float>(), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  float row[2];
  grid.read_rows(1, 1, row);
  EXPECT_EQ(row[0], 3);
  EXPECT_EQ(row[1], 4);
  EXPECT_THROW(grid.read_rows(2, 5, row), IoError);
  EXPECT_EQ(f.dataset_info("tokens").dtype, h5::DType::u16);

  const auto listed = f.list_datasets();
  ASSERT_EQ(listed.size(), 4u);
  EXPECT_EQ(listed[0].path, "/tokens");  // creation order
  EXPECT_EQ(listed[1].path, "/nested/deeper/offsets");
  EXPECT_EQ(listed[3].path, "/grid");
  EXPECT_TRUE(f.is_group("/nested/deeper"));
  EXPECT_TRUE(f.is_dataset("/tokens"));
  EXPECT_FALSE(f.exists("/nested/nothing/here"));

  EXPECT_EQ(f.read_attr_int("vocab_size"), 50257);
  EXPECT_EQ(f.read_attr_string("tokenizer"), "byte");
  EXPECT_DOUBLE_EQ(f.read_attr_double("tau"), 0.25);
  EXPECT_EQ(f.read_attr_ints("ids"), (std::vector<std::int64_t>{3, 4, 5}));
  EXPECT_EQ(f.read_attr_doubles("qs"), (std::vector<double>{0.1, 0.9}));
  EXPECT_EQ(f.read_attr_string("note", "/tokens"), "on a dataset");
  EXPECT_EQ(f.attr_text("ids"), "[3, 4, 5]");
  EXPECT_TRUE(f.has_attr("tau"));
  EXPECT_FALSE(f.has_attr("nope"));
  expect_io_error([&] { (void)f.read_attr_int("tokenizer"); }, {p.string(), "tokenizer", "not an integer"});
  expect_io_error([&] { (void)f.read_attr_string("nope"); }, {p.string(), "no attribute 'nope'"});
  expect_io_error([&] { (void)f.open_dataset("missing"); }, {p.string(), "/missing"});
  expect_io_error([&] { (void)h5::File::create(dir / "no-dir" / "x.h5"); }, {"no-dir"});
}

TEST(Inspect, SummarizesCheckpointsAndGenericFiles) {
  flowlm::testing::TempDir dir;
  Fixture fx;
  fx.model[0].second = Tensor({11, 8}, 2.0f);  // l2 = 2 * sqrt(88), mean 2
  const fs::path p = dir / "step_00001000.h5";
  fx.write(p);
  std::ostringstream out;
  inspect_file(p, out);
  const std::string s = out.str();
  for (const std::string needle :
       {"/model/transformer.wte.weight  float32  [11, 8]", "/model/transformer.h.0.attn.c_attn.weight",
        "[8, 24]", "/optim/m/transformer.wte.weight", "format_version = 1", "step = 1000",
        "config_toml = <5 lines", "kind = \"train\"", "data_cursor = [5, -1, 1099511627776]",
        "min=2 max=2 mean=2", "NONFINITE=1", "model parameters: "})
    EXPECT_NE(s.find(needle), std::string::npos) << "'" << needle << "' not in:\n" << s;
  EXPECT_NE(s.find(fmt::format("l2={:.6g}", 2.0 * std::sqrt(88.0))), std::string::npos) << s;
  // model parameters: 88 + 192 + 8 + 24 + 1 + 0
  EXPECT_NE(s.find("model parameters: 313"), std::string::npos) << s;

  const fs::path g = dir / "scores.h5";
  {
    auto f = h5::File::create(g);
    f.write_dataset("loss", std::vector<float>{1, 3});
    f.write_dataset("index", std::vector<std::int64_t>{4, 9});
    f.close();
  }
  std::ostringstream out2;
  inspect_file(g, out2);
  EXPECT_NE(out2.str().find("/loss  float32  [2]  l2=3.16228 min=1 max=3 mean=2"), std::string::npos)
      << out2.str();
  EXPECT_NE(out2.str().find("/index  int64  [2]  min=4 max=9"), std::string::npos) << out2.str();
  EXPECT_EQ(out2.str().find("model parameters"), std::string::npos);

  std::ostringstream out3;
  expect_io_error([&] { inspect_file(dir / "nope.h5", out3); }, {"nope.h5", "no such file"});
}
