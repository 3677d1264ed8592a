#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "core/error.hpp"
#include "data/loader.hpp"
#include "data/prepare.hpp"
#include "data/shard.hpp"
#include "data/tokenizer.hpp"
#include "support/testing.hpp"

namespace fs = std::filesystem;
using namespace flowlm;
using namespace flowlm::data;

namespace {

using flowlm::testing::contains;
using flowlm::testing::thrown;

std::vector<std::uint16_t> random_tokens(std::size_t n, std::uint16_t vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint16_t> v(n);
  for (auto& t : v) t = static_cast<std::uint16_t>(rng() % vocab);
  return v;
}

void write_bytes(const fs::path& p, const void* data, std::size_t n) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}

/// An llm.c shard with a hand-made header (for corrupt-file cases).
void write_llmc(const fs::path& p, std::int32_t magic, std::int32_t version, std::int32_t count,
                const std::vector<std::uint16_t>& tokens) {
  std::vector<char> buf(1024 + tokens.size() * 2, 0);
  std::array<std::int32_t, 3> h{{magic, version, count}};
  std::memcpy(buf.data(), h.data(), sizeof h);
  if (!tokens.empty()) std::memcpy(buf.data() + 1024, tokens.data(), tokens.size() * 2);
  write_bytes(p, buf.data(), buf.size());
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

// ---- shards ---------------------------------------------------------------------------

TEST(Shard, RoundTripLlmC) {
  flowlm::testing::TempDir dir("data-shard");
  const auto tokens = random_tokens(5000, 50257, 1);
  write_shard(dir / "a.bin", tokens);
  EXPECT_FALSE(fs::exists(dir / "a.bin.tmp"));
  EXPECT_EQ(fs::file_size(dir / "a.bin"), 1024u + 2 * tokens.size());
  TokenShard s(dir / "a.bin", 50257);
  EXPECT_EQ(s.format(), ShardFormat::LlmC);
  EXPECT_EQ(s.size(), 5000);
  EXPECT_EQ(s.to_vector(), tokens);
}

TEST(Shard, RoundTripRawAndEmpty) {
  flowlm::testing::TempDir dir("data-shard");
  const auto tokens = random_tokens(777, 300, 2);
  write_shard(dir / "train.bin", tokens, ShardFormat::Raw);
  EXPECT_EQ(fs::file_size(dir / "train.bin"), 2 * tokens.size());
  TokenShard s(dir / "train.bin", 300);
  EXPECT_EQ(s.format(), ShardFormat::Raw);
  EXPECT_EQ(s.to_vector(), tokens);

  write_shard(dir / "empty.bin", {});
  TokenShard e(dir / "empty.bin", 256);
  EXPECT_EQ(e.format(), ShardFormat::LlmC);
  EXPECT_EQ(e.size(), 0);
}

TEST(Shard, TruncatedHeader) {
  flowlm::testing::TempDir dir("data-shard");
  const std::array<std::int32_t, 3> h{{kShardMagic, kShardVersion, 10}};
  write_bytes(dir / "t.bin", h.data(), sizeof h);
  const auto msg = thrown<IoError>([&] { TokenShard(dir / "t.bin", 256); });
  EXPECT_TRUE(contains(msg, "t.bin")) << msg;
  EXPECT_TRUE(contains(msg, "truncated")) << msg;
}

TEST(Shard, BadMagic) {
  flowlm::testing::TempDir dir("data-shard");
  write_llmc(dir / "m.bin", 12345, 1, 4, {1, 2, 3, 4});
  auto msg = thrown<IoError>([&] { TokenShard(dir / "m.bin", 256); });
  EXPECT_TRUE(contains(msg, "m.bin") && contains(msg, "12345")) << msg;
  // Forcing the llm.c format on a raw file reports its magic too.
  write_shard(dir / "raw.bin", {7, 0, 9, 9}, ShardFormat::Raw);
  msg = thrown<IoError>([&] { TokenShard(dir / "raw.bin", 256, ShardFormat::LlmC); });
  EXPECT_TRUE(contains(msg, "raw.bin") && contains(msg, "magic")) << msg;
}

TEST(Shard, WrongVersion) {
  flowlm::testing::TempDir dir("data-shard");
  write_llmc(dir / "v.bin", kShardMagic, 7, 2, {1, 2});
  const auto msg = thrown<IoError>([&] { TokenShard(dir / "v.bin", 256); });
  EXPECT_TRUE(contains(msg, "v.bin") && contains(msg, "version 7")) << msg;
}

TEST(Shard, SizeMismatch) {
  flowlm::testing::TempDir dir("data-shard");
  write_llmc(dir / "s.bin", kShardMagic, 1, 10, {1, 2, 3});
  auto msg = thrown<IoError>([&] { TokenShard(dir / "s.bin", 256); });
  EXPECT_TRUE(contains(msg, "s.bin") && contains(msg, "10 tokens")) << msg;
  const unsigned char odd[3] = {1, 0, 2};
  write_bytes(dir / "odd.bin", odd, 3);
  msg = thrown<IoError>([&] { TokenShard(dir / "odd.bin", 256); });
  EXPECT_TRUE(contains(msg, "odd.bin") && contains(msg, "odd size")) << msg;
}

TEST(Shard, TokenOutOfVocabNamesIndexAndValue) {
  flowlm::testing::TempDir dir("data-shard");
  std::vector<std::uint16_t> tokens = {1, 2, 3, 4, 5, 300, 6, 400};
  write_shard(dir / "v.bin", tokens);
  const auto msg = thrown<DataError>([&] { TokenShard(dir / "v.bin", 256); });
  EXPECT_TRUE(contains(msg, "v.bin") && contains(msg, "token 300") && contains(msg, "index 5")) << msg;
  EXPECT_NO_THROW(TokenShard(dir / "v.bin", 401));
  EXPECT_THROW(TokenShard(dir / "v.bin", 400), DataError);
  EXPECT_THROW(TokenShard(dir / "v.bin", 70000), ConfigError);
}

TEST(Shard, MissingFile) {
  flowlm::testing::TempDir dir("data-shard");
  const auto msg = thrown<IoError>([&] { TokenShard(dir / "nope.bin", 256); });
  EXPECT_TRUE(contains(msg, "nope.bin")) << msg;
}

TEST(Shard, ExpandPathsSortsAndChecks) {
  flowlm::testing::TempDir dir("data-glob");
  for (const char* n : {"b_001.bin", "a_002.bin", "b_000.bin", "c.txt"}) write_shard(dir / n, {1});
  const auto files =
      expand_paths({(dir / "b_*.bin").string(), (dir / "a_002.bin").string(), (dir / "b_000.bin").string()});
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0].filename(), "a_002.bin");
  EXPECT_EQ(files[1].filename(), "b_000.bin");
  EXPECT_EQ(files[2].filename(), "b_001.bin");
  EXPECT_EQ(expand_paths({"b_*.bin"}, dir.path()).size(), 2u);

  auto msg = thrown<IoError>([&] { expand_paths({(dir / "z_*.bin").string()}); });
  EXPECT_TRUE(contains(msg, "z_*.bin") && contains(msg, "matches no files")) << msg;
  msg = thrown<IoError>([&] { expand_paths({(dir / "missing.bin").string()}); });
  EXPECT_TRUE(contains(msg, "missing.bin")) << msg;
}

// ---- tokenizer ------------------------------------------------------------------------

TEST(Tokenizer, ByteRoundTrip) {
  const auto tok = make_tokenizer("byte");
  EXPECT_EQ(tok->vocab_size(), 256);
  EXPECT_EQ(tok->eot(), 0);
  std::string text = "Hello, wörld!\n\t~";
  text.push_back(static_cast<char>(0xff));
  const auto ids = tok->encode(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[0], 'H');
  EXPECT_EQ(ids.back(), 255);
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_THROW(tok->encode(std::string("a\0b", 3)), DataError);
  EXPECT_THROW(tok->decode({65, 256}), DataError);
  EXPECT_THROW(tok->decode({-1}), DataError);
}

TEST(Tokenizer, FactoryErrors) {
  auto msg = thrown<ConfigError>([] { make_tokenizer("wordpiece"); });
  EXPECT_TRUE(contains(msg, "wordpiece") && contains(msg, "byte")) << msg;
  msg = thrown<ConfigError>([] { make_tokenizer("gpt2"); });
  EXPECT_TRUE(contains(msg, "gpt2")) << msg;
}

// ---- prepare --------------------------------------------------------------------------

TEST(Prepare, TokenizesARepositoryFile) {
  flowlm::testing::TempDir dir("data-prepare");
  const fs::path src = flowlm::testing::source_dir() / "CMakeLists.txt";
  const std::string text = read_file(src);
  ASSERT_GT(text.size(), 1000u);
  const auto world = comm::Communicator::world();

  PrepareOptions o;
  o.inputs = {src.string()};
  o.output_dir = dir / "out";
  o.name = "cm";
  o.val_fraction = 0.25;
  o.shard_tokens = 1000;
  // An old shard beyond what this run writes must disappear.
  fs::create_directories(o.output_dir);
  write_shard(o.output_dir / "cm_train_000099.bin", {1, 2});
  const auto s = prepare_text_shards(o, world);

  const auto n = static_cast<std::int64_t>(text.size()) + 1;  // one EOT per document
  EXPECT_EQ(s.files, 1);
  EXPECT_EQ(s.bytes, static_cast<std::int64_t>(text.size()));
  EXPECT_EQ(s.tokens, n);
  EXPECT_EQ(s.val_tokens, static_cast<std::int64_t>(0.25 * static_cast<double>(n)));
  EXPECT_EQ(s.train_tokens + s.val_tokens, n);
  EXPECT_EQ(s.train_shards, (s.train_tokens + 999) / 1000);
  EXPECT_EQ(s.val_shards, (s.val_tokens + 999) / 1000);
  EXPECT_FALSE(fs::exists(o.output_dir / "cm_train_000099.bin"));

  // val shards then train shards, concatenated, are EOT + the file's bytes.
  std::vector<std::int32_t> all;
  for (const char* split : {"val", "train"}) {
    const auto files = expand_paths({(o.output_dir / (std::string("cm_") + split + "_*.bin")).string()});
    EXPECT_EQ(static_cast<std::int64_t>(files.size()), split[0] == 'v' ? s.val_shards : s.train_shards);
    for (const auto& f : files) {
      TokenShard sh(f, 256);
      EXPECT_LE(sh.size(), 1000);
      for (index_t i = 0; i < sh.size(); ++i) all.push_back(sh[i]);
    }
  }
  ASSERT_EQ(static_cast<std::int64_t>(all.size()), n);
  EXPECT_EQ(all[0], 0);
  all.erase(all.begin());
  EXPECT_EQ(ByteTokenizer().decode(all), text);
  EXPECT_EQ(fs::path(shard_file_name("cm", "val", 3)).filename(), "cm_val_000003.bin");
}

TEST(Prepare, BadOptionsAndInputs) {
  flowlm::testing::TempDir dir("data-prepare");
  const auto world = comm::Communicator::world();
  PrepareOptions o;
  o.inputs = {(flowlm::testing::source_dir() / "CMakeLists.txt").string()};
  o.output_dir = dir / "out";
  o.val_fraction = 1.0;
  EXPECT_TRUE(contains(thrown<ConfigError>([&] { prepare_text_shards(o, world); }), "val_fraction"));
  o.val_fraction = 0.1;
  o.shard_tokens = 0;
  EXPECT_TRUE(contains(thrown<ConfigError>([&] { prepare_text_shards(o, world); }), "shard_tokens"));
  o.shard_tokens = 100;
  o.tokenizer = "nope";
  EXPECT_THROW(prepare_text_shards(o, world), ConfigError);
  o.tokenizer = "byte";
  o.inputs = {(dir / "absent.txt").string()};
  EXPECT_TRUE(contains(thrown<IoError>([&] { prepare_text_shards(o, world); }), "absent.txt"));
  const char bin[4] = {'a', '\0', 'b', 'c'};
  write_bytes(dir / "binary.txt", bin, 4);
  o.inputs = {(dir / "binary.txt").string()};
  const auto msg = thrown<DataError>([&] { prepare_text_shards(o, world); });
  EXPECT_TRUE(contains(msg, "binary.txt") && contains(msg, "offset 1")) << msg;
}

// ---- dataset and loader ---------------------------------------------------------------

namespace {

/// Three shards with distinct lengths (tails that do not fill a window are skipped).
struct LoaderFixture {
  flowlm::testing::TempDir dir{"data-loader"};
  std::vector<std::vector<std::uint16_t>> shards;
  std::vector<fs::path> files;
  LoaderFixture() {
    const std::size_t lens[] = {103, 41, 64};  // T = 8: 12, 5, 7 windows
    for (std::size_t i = 0; i < 3; ++i) {
      shards.push_back(random_tokens(lens[i], 97, static_cast<unsigned>(10 + i)));
      files.push_back(dir / fmt::format("s_{}.bin", i));
      write_shard(files.back(), shards.back(), i == 1 ? ShardFormat::Raw : ShardFormat::LlmC);
    }
  }
};

}  // namespace

TEST(Loader, WindowsMatchTheFiles) {
  LoaderFixture fx;
  const index_t T = 8;
  TokenDataset ds(fx.files, T, 97);
  ASSERT_EQ(ds.n_windows(), 12 + 5 + 7);
  std::vector<std::int32_t> in(T), tg(T);
  index_t w = 0;
  for (std::size_t s = 0; s < 3; ++s) {
    const auto& tok = fx.shards[s];
    for (std::size_t start = 0; start + T + 1 <= tok.size(); start += T, ++w) {
      ds.load_window(w, in.data(), tg.data());
      for (index_t t = 0; t < T; ++t) {
        ASSERT_EQ(in[t], tok[start + t]) << "window " << w;
        ASSERT_EQ(tg[t], tok[start + t + 1]) << "window " << w;
      }
    }
  }
  EXPECT_EQ(w, ds.n_windows());
  EXPECT_THROW(ds.load_window(w, in.data(), tg.data()), DataError);
  EXPECT_THROW(ds.load_window(-1, in.data(), tg.data()), DataError);
}

TEST(Loader, NoShuffleKeepsOrderAndMicroBatchLayout) {
  LoaderFixture fx;
  const index_t T = 8;
  // world 2, rank 1, micro_batch 2, global 8 -> A = 2; positions (m*2+1)*2 ..
  TokenLoader ld(fx.files, T, 97, 8, 2, 1, 2, 0, false);
  EXPECT_EQ(ld.grad_accum_steps(), 2);
  EXPECT_EQ(ld.tokens_per_step(), 64);
  EXPECT_EQ(ld.micro_batch_windows(0), (std::vector<index_t>{2, 3}));
  EXPECT_EQ(ld.micro_batch_windows(1), (std::vector<index_t>{6, 7}));
  ld.advance_step();
  ld.advance_step();
  ld.advance_step();  // position 24 = n_windows: epoch 1 starts again at 0
  EXPECT_EQ(ld.epoch(), 1);
  EXPECT_EQ(ld.micro_batch_windows(0), (std::vector<index_t>{2, 3}));
  std::vector<std::int32_t> in(2 * T), tg(2 * T), in2(T), tg2(T);
  ld.load_micro_batch(1, in.data(), tg.data());
  ld.dataset().load_window(7, in2.data(), tg2.data());
  EXPECT_TRUE(std::equal(in2.begin(), in2.end(), in.begin() + T));
  EXPECT_TRUE(std::equal(tg2.begin(), tg2.end(), tg.begin() + T));
  EXPECT_THROW(ld.micro_batch_windows(2), Error);
}

TEST(Loader, ShuffleIsAPermutationAndSeedsDiffer) {
  LoaderFixture fx;
  TokenLoader a(fx.files, 8, 97, 4, 1, 0, 1, 42, true);  // 24 windows = 6 steps per epoch
  const auto n = a.n_windows();
  std::vector<index_t> epoch0;
  for (int step = 0; step < 6; ++step, a.advance_step())
    for (index_t m = 0; m < a.grad_accum_steps(); ++m) epoch0.push_back(a.micro_batch_windows(m)[0]);
  std::vector<index_t> sorted = epoch0;
  std::sort(sorted.begin(), sorted.end());
  for (index_t i = 0; i < n; ++i) EXPECT_EQ(sorted[i], i);
  std::vector<index_t> identity(sorted);
  EXPECT_NE(epoch0, identity);
  EXPECT_EQ(epoch0, epoch_permutation(n, 42, 0));
  EXPECT_NE(epoch_permutation(n, 42, 0), epoch_permutation(n, 43, 0));
  EXPECT_NE(epoch_permutation(n, 42, 0), epoch_permutation(n, 42, 1));
  EXPECT_EQ(epoch_permutation(n, 42, 1), epoch_permutation(n, 42, 1));
  EXPECT_EQ(a.window_at(n + 5), epoch_permutation(n, 42, 1)[5]);
  // A large permutation is still a permutation.
  auto big = epoch_permutation(100000, 7, 3);
  std::sort(big.begin(), big.end());
  for (index_t i = 0; i < 100000; ++i) ASSERT_EQ(big[i], i);
}

TEST(Loader, CursorRestoreContinuesIdentically) {
  LoaderFixture fx;
  const index_t T = 8;
  auto run = [&](TokenLoader& ld, int steps) {
    std::vector<std::int32_t> out, in(3 * T), tg(3 * T);
    for (int s = 0; s < steps; ++s, ld.advance_step())
      for (index_t m = 0; m < ld.grad_accum_steps(); ++m) {
        ld.load_micro_batch(m, in.data(), tg.data());
        out.insert(out.end(), in.begin(), in.end());
        out.insert(out.end(), tg.begin(), tg.end());
      }
    return out;
  };
  TokenLoader a(fx.files, T, 97, 9, 3, 0, 1, 5, true);  // 9 windows a step: crosses epochs
  run(a, 4);
  const LoaderCursor c = a.cursor();
  EXPECT_EQ(c.position, 36);
  const auto rest_a = run(a, 5);
  TokenLoader b(fx.files, T, 97, 9, 3, 0, 1, 5, true);
  b.restore(c);
  EXPECT_EQ(run(b, 5), rest_a);
  TokenLoader other_seed(fx.files, T, 97, 9, 3, 0, 1, 6, true);
  other_seed.restore(c);
  EXPECT_NE(run(other_seed, 5), rest_a);
  EXPECT_THROW(b.restore(LoaderCursor{-1}), DataError);
}

TEST(Loader, ValidatesBatchesAndData) {
  LoaderFixture fx;
  auto msg = thrown<ConfigError>([&] { TokenLoader(fx.files, 8, 97, 10, 3, 0, 2, 0, true); });
  EXPECT_TRUE(contains(msg, "10") && contains(msg, "6")) << msg;
  EXPECT_THROW(TokenLoader(fx.files, 8, 97, 0, 1, 0, 1, 0, true), ConfigError);
  EXPECT_THROW(TokenLoader({}, 8, 97, 4, 1, 0, 1, 0, true), ConfigError);
  msg = thrown<DataError>([&] { TokenLoader(fx.files, 200, 97, 4, 1, 0, 1, 0, true); });
  EXPECT_TRUE(contains(msg, "s_0.bin") && contains(msg, "201")) << msg;
  EXPECT_THROW(TokenLoader(fx.files, 8, 50, 4, 1, 0, 1, 0, true), DataError);  // tokens up to 96
}

TEST(Loader, ValWindowsPartition) {
  LoaderFixture fx;
  TokenDataset ds(fx.files, 8, 97);
  for (int world : {1, 2, 3, 5, 30}) {
    for (index_t max : {index_t{0}, index_t{7}, index_t{100}}) {
      const index_t n = max > 0 ? std::min(max, ds.n_windows()) : ds.n_windows();
      std::vector<index_t> all;
      for (int r = 0; r < world; ++r) {
        const auto w = ds.val_windows(r, world, max);
        EXPECT_LE(static_cast<index_t>(w.size()), n / world + 1);
        EXPECT_GE(static_cast<index_t>(w.size()), n / world);
        all.insert(all.end(), w.begin(), w.end());
      }
      ASSERT_EQ(static_cast<index_t>(all.size()), n);
      for (index_t i = 0; i < n; ++i) EXPECT_EQ(all[i], i);
    }
  }
}
