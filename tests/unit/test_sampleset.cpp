// Sample sets: JSONL parsing and its errors, the [EOT] prompt answer [EOT] layout, over-long
// samples, HDF5 round trip with fingerprint, blocks, padded batches, the training order, and
// the synthetic corpus (and its fine-tuning mixtures), and exact-match evaluation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/error.hpp"
#include "data/sampleset.hpp"
#include "data/synthetic.hpp"
#include "data/tokenizer.hpp"
#include "io/checkpoint.hpp"
#include "support/testing.hpp"
#include "train/evaluate.hpp"
#include "train/trainer.hpp"

namespace fs = std::filesystem;
using namespace flowlm;
using namespace flowlm::data;

namespace {

using flowlm::testing::contains;
using flowlm::testing::thrown;

void write_text(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

TEST(SampleSet, LayoutIsEotPromptAnswerEot) {
  const ByteTokenizer tok;
  SampleSet s;
  const auto c = build_samples({{"ab=", "xy"}, {"", "z"}}, tok, 32, Overlong::error, "test", s);
  EXPECT_EQ(c.kept, 2);
  ASSERT_EQ(s.size(), 2);
  const std::vector<std::int32_t> first(s.sample(0), s.sample(0) + s.length(0));
  EXPECT_EQ(first, (std::vector<std::int32_t>{0, 'a', 'b', '=', 'x', 'y', 0}));
  EXPECT_EQ(s.answer_start[0], 4);
  EXPECT_EQ(s.answer_tokens(0), 3);  // x, y and the closing EOT
  EXPECT_EQ(s.input_length(0), 6);
  EXPECT_EQ(s.answer_start[1], 1);  // an empty prompt predicts its answer from the EOT
  // The mask counts exactly the answer targets.
  PaddedBatch b;
  pack_samples(s, {0, 1}, b);
  EXPECT_EQ(b.T, 6);
  const std::vector<float> mask0(b.mask.begin(), b.mask.begin() + 6), mask1(b.mask.begin() + 6, b.mask.end());
  EXPECT_EQ(mask0, (std::vector<float>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(mask1, (std::vector<float>{1, 1, 0, 0, 0, 0}));
  EXPECT_EQ(b.targets[3], 'x');
  EXPECT_EQ(b.targets[5], 0);
}

TEST(SampleSet, BadRecordsGiveClearErrors) {
  const ByteTokenizer tok;
  SampleSet s;
  EXPECT_TRUE(contains(thrown<DataError>([&] {
                         build_samples({{"p", ""}}, tok, 32, Overlong::error, "f.jsonl", s);
                       }),
                       "empty answer"));
  const std::string over = thrown<DataError>([&] {
    build_samples({{"long prompt", "answer"}}, tok, 8, Overlong::error, "f.jsonl", s);
  });
  EXPECT_TRUE(contains(over, "block_size = 8")) << over;
  EXPECT_TRUE(contains(over, "record 1")) << over;

  const flowlm::testing::TempDir dir("flowlm-sampleset");
  write_text(dir / "missing.jsonl", "{\"prompt\": \"a\", \"answer\": \"b\"}\n{\"prompt\": \"a\"}\n");
  const std::string m = thrown<DataError>([&] { read_jsonl(dir / "missing.jsonl", "prompt", "answer"); });
  EXPECT_TRUE(contains(m, "missing.jsonl:2")) << m;
  EXPECT_TRUE(contains(m, "missing field \"answer\"")) << m;
  write_text(dir / "bad.jsonl", "{\"prompt\": \"a\", \"answer\": \"b\"}\n\n{not json\n");
  EXPECT_TRUE(
      contains(thrown<DataError>([&] { read_jsonl(dir / "bad.jsonl", "prompt", "answer"); }), "bad.jsonl:3"));
  write_text(dir / "num.jsonl", "{\"q\": \"a\", \"a\": 5}\n");
  EXPECT_TRUE(
      contains(thrown<DataError>([&] { read_jsonl(dir / "num.jsonl", "q", "a"); }), "must be a string"));
}

TEST(SampleSet, OverlongSamplesAreTruncatedOrDroppedAndCounted) {
  const ByteTokenizer tok;
  const std::vector<PromptAnswer> pairs = {{"ab=", "cdefgh"}, {"abcdefghij=", "k"}, {"a=", "b"}};
  SampleSet t;
  const auto ct = build_samples(pairs, tok, 6, Overlong::truncate, "x", t);
  EXPECT_EQ(ct.kept, 2);
  EXPECT_EQ(ct.truncated, 1);
  EXPECT_EQ(ct.dropped, 1);  // its prompt alone exceeds block_size: no answer token left
  EXPECT_EQ(t.input_length(0), 6);
  EXPECT_EQ(t.answer_start[0], 4);
  SampleSet d;
  const auto cd = build_samples(pairs, tok, 6, Overlong::drop, "x", d);
  EXPECT_EQ(cd.kept, 1);
  EXPECT_EQ(cd.dropped, 2);
  EXPECT_THROW(parse_overlong("cut"), ConfigError);
}

TEST(SampleSet, RoundTripBlocksAndFingerprint) {
  const flowlm::testing::TempDir dir("flowlm-sampleset");
  const ByteTokenizer tok;
  SampleSet s;
  build_samples(synthetic_samples("reverse", 25, 3, Split::train), tok, 32, Overlong::error, "x", s);
  write_sample_set(dir / "a.h5", s);
  EXPECT_EQ(s.fingerprint.size(), 16u);
  const auto info = read_sample_set_info(dir / "a.h5");
  EXPECT_EQ(info.n_samples, 25);
  EXPECT_EQ(info.fingerprint, s.fingerprint);
  const SampleSet all = read_sample_set(dir / "a.h5");
  EXPECT_EQ(all.tokens, s.tokens);
  EXPECT_EQ(all.offsets, s.offsets);
  EXPECT_EQ(all.answer_start, s.answer_start);
  const SampleSet block = read_sample_set(dir / "a.h5", 10, 5);
  ASSERT_EQ(block.size(), 5);
  for (index_t i = 0; i < 5; ++i) {
    ASSERT_EQ(block.length(i), s.length(10 + i));
    EXPECT_TRUE(std::equal(block.sample(i), block.sample(i) + block.length(i), s.sample(10 + i)));
  }
  EXPECT_THROW(read_sample_set(dir / "a.h5", 20, 10), DataError);
  // One changed token changes the fingerprint.
  SampleSet other = s;
  other.tokens[3] ^= 1;
  EXPECT_NE(sample_set_fingerprint(other), s.fingerprint);
}

TEST(SampleSet, PrepareJsonlWritesTrainAndValSets) {
  const flowlm::testing::TempDir dir("flowlm-sampleset");
  write_jsonl(dir / "in.jsonl", synthetic_samples("add", 40, 1, Split::train), "question", "reply");
  SamplePrepareOptions o;
  o.inputs = {(dir / "*.jsonl").string()};
  o.output_dir = dir / "out";
  o.name = "add";
  o.val_fraction = 0.25;
  o.prompt_field = "question";
  o.answer_field = "reply";
  o.block_size = 32;
  const auto sum = prepare_sample_sets(o, comm::Communicator::self());
  EXPECT_EQ(sum.records, 40);
  EXPECT_EQ(sum.train_samples, 30);
  EXPECT_EQ(sum.val_samples, 10);
  EXPECT_EQ(read_sample_set_info(dir / "out" / "add_train.h5").n_samples, 30);
  EXPECT_EQ(read_sample_set_info(dir / "out" / "add_val.h5").n_samples, 10);
  o.prompt_field = "prompt";  // the records do not have it
  EXPECT_TRUE(contains(thrown<DataError>([&] { prepare_sample_sets(o, comm::Communicator::self()); }),
                       "missing field \"prompt\""));
}

TEST(SampleLoader, EveryStepTilesTheEpochAcrossRanks) {
  const index_t n = 24, gb = 8, mb = 2;
  for (int world : {1, 2, 4}) {
    std::multiset<index_t> seen;
    for (int r = 0; r < world; ++r) {
      SampleLoader l(n, gb, mb, r, world, 5, true);
      std::vector<index_t> mine;
      for (int step = 0; step < 3; ++step) {
        const auto all = l.step_samples();
        for (index_t m = 0; m < l.grad_accum_steps(); ++m)
          for (const index_t i : l.micro_batch_samples(m)) {
            seen.insert(i);
            EXPECT_NE(std::find(all.begin(), all.end(), i), all.end());
          }
        l.advance_step();
      }
    }
    for (index_t i = 0; i < n; ++i) EXPECT_EQ(seen.count(i), 1u) << "world " << world << " sample " << i;
  }
  EXPECT_THROW(SampleLoader(0, 8, 2, 0, 1, 1, true), DataError);
  EXPECT_THROW(SampleLoader(10, 6, 4, 0, 1, 1, true), ConfigError);
}

TEST(Synthetic, DeterministicCorrectAndDisjointSplits) {
  for (const auto& task : synthetic_task_names()) {
    const auto a = synthetic_samples(task, 50, 9, Split::train),
               b = synthetic_samples(task, 50, 9, Split::train);
    ASSERT_EQ(a.size(), 50u);
    for (std::size_t i = 0; i < a.size(); ++i)
      EXPECT_EQ(a[i].prompt + a[i].answer, b[i].prompt + b[i].answer);
    std::set<std::string> train;
    for (const auto& s : synthetic_samples(task, 400, 1, Split::train)) train.insert(s.prompt);
    for (const auto& s : synthetic_samples(task, 100, 2, Split::heldout))
      EXPECT_EQ(train.count(s.prompt), 0u) << task << " " << s.prompt;
  }
  const auto m = synthetic_samples("multiply", 20, 4, Split::train);
  for (const auto& s : m) {
    const auto star = s.prompt.find('*');
    const long x = std::stol(s.prompt.substr(4, star - 4)), y = std::stol(s.prompt.substr(star + 1));
    EXPECT_EQ(std::to_string(x * y), s.answer) << s.prompt;
  }
  EXPECT_EQ(synthetic_samples("reverse", 1, 4, Split::train)[0].prompt.substr(0, 4), "rev:");
  EXPECT_THROW(synthetic_samples("divide", 1, 1, Split::train), ConfigError);
  const ByteTokenizer tok;
  const auto toks = pretraining_tokens({{"ab=", "c"}}, tok);
  EXPECT_EQ(toks, (std::vector<std::uint16_t>{0, 'a', 'b', '=', 'c', 0}));
}

TEST(Synthetic, FinetuneSetMixesKnownTasksInOneInK) {
  const std::vector<std::string> known = {"copy", "sort"};
  const auto set = synthetic_finetune_set("multiply", 30, known, 4, 7);
  ASSERT_EQ(set.size(), 40u);  // 30 new + 30 / 3 known
  for (std::size_t i = 0; i < set.size(); ++i) {
    const std::string kind = set[i].prompt.substr(0, 4);
    if (i % 4 == 0)
      EXPECT_EQ(kind, (i / 4) % 2 == 0 ? "cpy:" : "srt:") << i;
    else
      EXPECT_EQ(kind, "mul:") << i;
  }
  EXPECT_EQ(synthetic_finetune_set("multiply", 30, known, 0, 7).size(), 30u);
  const auto again = synthetic_finetune_set("multiply", 30, known, 4, 7);
  for (std::size_t i = 0; i < set.size(); ++i) EXPECT_EQ(set[i].prompt, again[i].prompt);
  EXPECT_THROW(synthetic_finetune_set("multiply", 30, known, 1, 7), ConfigError);
  EXPECT_THROW(synthetic_finetune_set("multiply", 30, {}, 4, 7), ConfigError);
}

TEST(Evaluate, ExactMatchFromOnePassEqualsGreedyDecoding) {
  // A briefly trained model gets some answers right and some wrong; the one-pass verdict of
  // evaluate_samples must agree with decoding each answer greedily, token by token.
  const flowlm::testing::TempDir dir("flowlm-exact");
  const ByteTokenizer tok;
  SyntheticOptions shortish;  // copy and reverse of 1-3 letters: learnable in a few seconds
  shortish.min_len = 1;
  shortish.max_len = 3;
  const std::int64_t steps = 400;  // measured: 44 of 80 right (200 steps: 1; 1000 steps: 80)
  write_synthetic_sample_set(dir / "train.h5",
                             synthetic_mixture({"copy", "reverse"}, 300, 3, Split::train, shortish), tok, 16);
  const std::string toml =
      "[run]\ndir = '" + (dir / "run").string() +
      "'\nseed = 3\n[model]\nn_layer = 2\nn_head = 2\nn_embd = 32\nvocab_size = 256\nblock_size = 16\n"
      "[optim]\nlr = 1e-2\nmin_lr = 1e-3\nwarmup_steps = 10\nweight_decay = 0.0\n[train]\nglobal_batch = 32\n"
      "micro_batch = 32\nseq_len = 16\nmax_steps = " +
      std::to_string(steps) +
      "\nlog_every = 1000\nval_every = 0\n"
      "[finetune]\ntrain_set = '" +
      (dir / "train.h5").string() + "'\n";
  flowlm::train::run_training(flowlm::config::parse_job(toml, "exact-match job"), comm::Communicator::self());
  auto gpt = flowlm::model::load_model(dir / "run" / flowlm::io::checkpoint_name(steps));
  write_synthetic_sample_set(
      dir / "eval.h5", synthetic_mixture({"copy", "reverse"}, 40, 4, Split::heldout, shortish), tok, 16);
  const SampleSet set = read_sample_set(dir / "eval.h5");
  const auto r = flowlm::train::evaluate_samples(*gpt, set, 16, comm::Communicator::self());
  std::vector<index_t> ids, max_new;
  for (index_t i = 0; i < set.size(); ++i) {
    ids.push_back(i);
    max_new.push_back(set.answer_tokens(i));
  }
  const auto answers = flowlm::train::greedy_answers(*gpt, set, ids, max_new, tok.eot());
  std::int64_t greedy_correct = 0;
  for (index_t i = 0; i < set.size(); ++i) {
    const auto& got = answers[static_cast<std::size_t>(i)];
    const std::int32_t* want = set.sample(i) + set.answer_start[i];
    greedy_correct +=
        static_cast<index_t>(got.size()) == set.answer_tokens(i) && std::equal(got.begin(), got.end(), want);
  }
  EXPECT_EQ(r.samples, set.size());
  EXPECT_EQ(r.correct, greedy_correct);
  std::printf("exact match: %lld of %lld\n", static_cast<long long>(r.correct),
              static_cast<long long>(r.samples));
  EXPECT_GT(r.correct, 0) << "the model should solve some problems";
  EXPECT_LT(r.correct, r.samples) << "and miss some, so both verdicts are exercised";
}

}  // namespace
