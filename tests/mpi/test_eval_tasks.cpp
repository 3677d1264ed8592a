// Benchmark tasks at np 1/2/4: every kind of task (multiple choice with few-shot prompts, greedy
// generation with stop strings, rolling perplexity over documents longer than the block) gives
// bitwise the same metrics, standard errors and per-item records on all ranks as a one-rank run
// made inside the test, for a GPT-2 and a Llama model.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>
#include <string>

#include "comm/comm.hpp"
#include "data/tokenizer.hpp"
#include "eval/engine.hpp"
#include "eval/run.hpp"
#include "eval/task.hpp"
#include "model/transformer.hpp"
#include "support/families.hpp"
#include "support/testing.hpp"

namespace {

using flowlm::comm::Communicator;
namespace fs = std::filesystem;

void write_tasks(const fs::path& d) {
  std::mt19937 rng(2);
  const char* words[] = {"red", "blue", "cat", "dog", "sun", "moon", "tea", "box"};
  auto word = [&] { return std::string(words[rng() % 8]); };
  std::ofstream mc(d / "mc.jsonl"), gen(d / "gen.jsonl"), roll(d / "roll.jsonl");
  for (int i = 0; i < 37; ++i) {  // uneven batches at every rank count
    mc << "{\"context\": \"" << word() << " " << word() << " " << i << "\", \"choices\": [\"" << word()
       << "\", \"" << word() << " " << word() << "\", \"" << word() << "\"], \"gold\": " << i % 3 << "}\n";
    gen << "{\"context\": \"" << word() << " " << i << ":\", \"target\": \"" << word() << "\"}\n";
  }
  for (int i = 0; i < 9; ++i) {
    roll << "{\"text\": \"";
    for (int k = 0; k < 3 + 7 * i; ++k) roll << word() << (k % 5 == 4 ? ". " : " ");
    roll << "\"}\n";
  }
  std::ofstream(d / "mc.toml") << "kind = \"multiple_choice\"\ndata = \"mc.jsonl\"\nnum_fewshot = 2\n";
  std::ofstream(d / "gen.toml") << "kind = \"generate\"\ndata = \"gen.jsonl\"\nnum_fewshot = 1\n"
                                   "[generation]\nuntil = [\".\", \"\\n\"]\nmax_new_tokens = 6\n"
                                   "[[filter]]\nname = \"first-word\"\nregex = \"(\\\\w+)\"\n";
  std::ofstream(d / "roll.toml") << "kind = \"loglikelihood_rolling\"\ndata = \"roll.jsonl\"\n";
}

TEST(EvalTasksMpi, EveryKindIsBitwiseTheSameAtAnyRankCount) {
  const Communicator world = Communicator::world();
  const flowlm::testing::TempDir dir("flowlm-eval-tasks", /*shared=*/true);
  if (world.is_root()) write_tasks(dir.path());
  world.barrier();
  const flowlm::data::ByteTokenizer tok;
  for (const std::string family : {"gpt2", "llama"}) {
    auto cfg = flowlm::testing::families().at(family);
    cfg.vocab_size = 256;
    cfg.block_size = 24;
    flowlm::model::Transformer m(cfg);
    m.init_random(4);
    const flowlm::eval::TextCodec codec(tok, false);
    for (const std::string name : {"mc", "gen", "roll"}) {
      const auto task = flowlm::eval::load_task(dir / (name + ".toml"));
      flowlm::eval::Engine all(m, 4, world), one(m, 4, Communicator::self());
      const auto got = flowlm::eval::run_task(all, codec, task, {});
      const auto want = flowlm::eval::run_task(one, codec, task, {});
      ASSERT_EQ(got.metrics.size(), want.metrics.size());
      for (std::size_t i = 0; i < got.metrics.size(); ++i) {
        EXPECT_EQ(got.metrics[i].name, want.metrics[i].name);
        EXPECT_EQ(std::memcmp(&got.metrics[i].value, &want.metrics[i].value, sizeof(double)), 0)
            << family << " " << name << " " << got.metrics[i].name << ": " << got.metrics[i].value << " vs "
            << want.metrics[i].value;
        EXPECT_EQ(got.metrics[i].influence, want.metrics[i].influence) << family << " " << name;
      }
      ASSERT_EQ(got.records.size(), want.records.size());
      for (std::size_t i = 0; i < got.records.size(); ++i)
        EXPECT_EQ(got.records[i].dump(), want.records[i].dump()) << family << " " << name << " item " << i;
      if (name == "roll") {
        int windows = 0;
        for (const auto& r : got.records) windows += r["tokens"].get<int>() > 24;
        EXPECT_GE(windows, 3) << "documents must span several windows";
      }
      if (name == "gen") {
        std::size_t tokens = 0;
        for (const auto& r : got.records) tokens += r["generated_tokens"].get<std::size_t>();
        EXPECT_GT(tokens, 37u) << "generation should produce text";
      }
    }
  }
}

}  // namespace
