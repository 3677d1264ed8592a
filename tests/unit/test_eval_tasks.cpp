// Benchmark tasks (src/eval) piece by piece: task files and their errors, few-shot prompts, Python
// regex semantics of the answer filters, lm-eval's exact_match, tokenization of context and
// continuation, rolling windows, standard errors, and the engine's log-likelihoods against a
// plain computation from a full forward. (The comparison with lm-eval itself is hf.eval_harness.)
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <numeric>
#include <random>
#include <set>

#include "core/error.hpp"
#include "data/tokenizer.hpp"
#include "eval/engine.hpp"
#include "eval/metrics.hpp"
#include "eval/prompt.hpp"
#include "eval/pyregex.hpp"
#include "eval/run.hpp"
#include "eval/task.hpp"
#include "model/transformer.hpp"
#include "support/families.hpp"
#include "support/testing.hpp"

namespace {

namespace fs = std::filesystem;
using flowlm::index_t;
using flowlm::eval::PyRegex;
using flowlm::testing::contains;
using flowlm::testing::TempDir;
using flowlm::testing::thrown;

void write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

std::string mc_items(int n) {
  std::string s;
  for (int i = 0; i < n; ++i)
    s += "{\"context\": \"Q" + std::to_string(i) +
         "\", \"choices\": [\"a\", \"bb\", \"c\"], \"gold\": " + std::to_string(i % 3) + "}\n";
  return s;
}

TEST(TaskFile, ReadsEveryKeyWithLmEvalDefaults) {
  const TempDir d("flowlm-task");
  fs::create_directories(d / "sub");
  write(d / "sub" / "items.jsonl", "{\"q\": \"2+2\", \"a\": 4}\n\n{\"q\": \"3+3\", \"a\": \"6\"}\n");
  write(d / "gsm.toml", R"TOML(
name = "tiny_gsm"
kind = "generate"
data = "sub/items.jsonl"
template = "Question: {prompt}\nAnswer:"
description = "Arithmetic.\n\n"
num_fewshot = 1
fewshot_sampler = "first_n"
fewshot_seed = 7
target_delimiter = " "
fewshot_delimiter = "\n\n"
[fields]
context = "q"
target = "a"
[generation]
until = ["Question:", "\n\n"]
max_new_tokens = 32
[[filter]]
name = "strict-match"
regex = "#### (\\-?[0-9\\.\\,]+)"
[[filter]]
name = "flexible-extract"
regex = "(-?[$0-9.,]{2,})|(-?[0-9]+)"
group_select = -1
[exact_match]
ignore_case = true
regexes_to_ignore = [",", "\\$", "(?s).*#### ", "\\.$"]
)TOML");
  const auto t = flowlm::eval::load_task(d / "gsm.toml");
  EXPECT_EQ(t.spec.name, "tiny_gsm");
  EXPECT_EQ(t.spec.kind, flowlm::eval::TaskKind::generate);
  ASSERT_EQ(t.items.size(), 2u);
  EXPECT_EQ(t.items[0].context, "2+2");
  EXPECT_EQ(t.items[0].target, "4");  // an integer target reads as its text
  EXPECT_EQ(t.items[1].line, 3);
  EXPECT_EQ(t.spec.until, (std::vector<std::string>{"Question:", "\n\n"}));
  ASSERT_EQ(t.spec.filters.size(), 2u);
  EXPECT_EQ(t.spec.filters[1].group_select, -1);
  EXPECT_TRUE(t.spec.exact_match.ignore_case);
  EXPECT_EQ(flowlm::eval::build_context(t, 1, 1, 7),
            "Arithmetic.\n\nQuestion: 2+2\nAnswer: 4\n\nQuestion: 3+3\nAnswer:");

  write(d / "mc.toml", "kind = \"multiple_choice\"\ndata = \"mc.jsonl\"\n");
  write(d / "mc.jsonl", "{\"context\": \"x\", \"choices\": [\"yes\", \"no\"], \"gold\": \"no\"}\n");
  const auto mc = flowlm::eval::load_task(d / "mc.toml");
  EXPECT_EQ(mc.spec.name, "mc");
  EXPECT_EQ(mc.items[0].gold, 1);  // gold given as the choice's text
  EXPECT_EQ(mc.spec.target_delimiter, " ");
  EXPECT_EQ(mc.spec.fewshot_delimiter, "\n\n");
  EXPECT_EQ(mc.spec.fewshot_seed, 1234);
}

TEST(TaskFile, ErrorsNameTheFileLineKeyAndValue) {
  const TempDir d("flowlm-task-errors");
  write(d / "mc.jsonl", mc_items(4));
  auto error = [&](const std::string& toml) {
    write(d / "t.toml", toml);
    return thrown<flowlm::Error>([&] { flowlm::eval::load_task(d / "t.toml"); });
  };
  std::string m = error("kind = \"multiple_choice\"\ndata = \"mc.jsonl\"\nnum_fewshots = 2\n");
  EXPECT_TRUE(contains(m, "t.toml:3") && contains(m, "unknown key 'num_fewshots'")) << m;
  m = error("kind = \"multi\"\ndata = \"mc.jsonl\"\n");
  EXPECT_TRUE(contains(m, "kind = \"multi\"") && contains(m, "multiple_choice, generate")) << m;
  m = error("kind = \"multiple_choice\"\n");
  EXPECT_TRUE(contains(m, "'data' is missing")) << m;
  m = error("kind = \"multiple_choice\"\ndata = \"mc.jsonl\"\nnum_fewshot = \"two\"\n");
  EXPECT_TRUE(contains(m, "num_fewshot = \"two\" must be an integer")) << m;
  m = error("kind = \"multiple_choice\"\ndata = \"mc.jsonl\"\n[generation]\nmax_new_tokens = 3\n");
  EXPECT_TRUE(contains(m, "[generation] applies to generate tasks only")) << m;
  m = error("kind = \"generate\"\ndata = \"mc.jsonl\"\n[[filter]]\nname = \"x\"\nregex = \"(unclosed\"\n");
  EXPECT_TRUE(contains(m, "filter 'x' regex") && contains(m, "(unclosed")) << m;
  m = error("kind = \"generate\"\ndata = \"mc.jsonl\"\n[fields]\ntarget = \"answer\"\n");
  EXPECT_TRUE(contains(m, "mc.jsonl:1") && contains(m, "no field \"answer\"")) << m;
  m = error("kind = \"multiple_choice\"\ndata = \"mc.jsonl\"\nnum_fewshot = 4\n");
  EXPECT_TRUE(contains(m, "num_fewshot = 4") && contains(m, "only 3 other items")) << m;
  m = error("kind = \"loglikelihood_rolling\"\ndata = \"mc.jsonl\"\n");
  EXPECT_TRUE(contains(m, "no field \"text\"")) << m;
  m = error("kind = \"multiple_choice\"\ndata = \"missing.jsonl\"\n");
  EXPECT_TRUE(contains(m, "missing.jsonl")) << m;
  write(d / "bad.jsonl", "{\"context\": \"x\", \"choices\": [\"a\"], \"gold\": 3}\n");
  m = error("kind = \"multiple_choice\"\ndata = \"bad.jsonl\"\n");
  EXPECT_TRUE(contains(m, "bad.jsonl:1") && contains(m, "gold") && contains(m, "= 3")) << m;
  m = error("kind = \"multiple_choice\"\ndata = \"mc.jsonl\"\ntemplate = \"no placeholder\"\n");
  EXPECT_TRUE(contains(m, "template = \"no placeholder\"") && contains(m, "{prompt}")) << m;
}

TEST(FewShot, RandomDrawsAreSeededPerItemDistinctAndNeverTheItem) {
  const TempDir d("flowlm-fewshot");
  write(d / "mc.jsonl", mc_items(30));
  write(d / "t.toml", "kind = \"multiple_choice\"\ndata = \"mc.jsonl\"\n");
  const auto t = flowlm::eval::load_task(d / "t.toml");
  std::set<std::vector<std::size_t>> distinct;
  for (std::size_t i = 0; i < 30; ++i) {
    const auto a = flowlm::eval::fewshot_indices(t, i, 5, 1234);
    EXPECT_EQ(a, flowlm::eval::fewshot_indices(t, i, 5, 1234));
    ASSERT_EQ(a.size(), 5u);
    EXPECT_EQ(std::set<std::size_t>(a.begin(), a.end()).size(), 5u);
    EXPECT_EQ(std::count(a.begin(), a.end(), i), 0);
    distinct.insert(a);
  }
  EXPECT_GT(distinct.size(), 25u) << "items should get different examples";
  EXPECT_NE(flowlm::eval::fewshot_indices(t, 3, 5, 1234), flowlm::eval::fewshot_indices(t, 3, 5, 99));
  // first_n: lm-eval's sampler (the first n + 1, without the item itself).
  auto first = t;
  first.spec.fewshot_sampler = "first_n";
  EXPECT_EQ(flowlm::eval::fewshot_indices(first, 1, 2, 0), (std::vector<std::size_t>{0, 2}));
  EXPECT_EQ(flowlm::eval::fewshot_indices(first, 7, 2, 0), (std::vector<std::size_t>{0, 1}));
  EXPECT_EQ(flowlm::eval::build_context(first, 1, 2, 0), "Q0 a\n\nQ2 c\n\nQ1");
}

TEST(PyRegex, FindallAndSubFollowPython) {
  // re.findall('x*', 'abxd') == ['', '', 'x', '', ''];  re.sub('x*', '-', 'abxd') == '-a-b--d-'
  const PyRegex x("x*", "test");
  std::vector<std::string> got;
  for (const auto& m : x.findall("abxd")) got.push_back(m[0]);
  EXPECT_EQ(got, (std::vector<std::string>{"", "", "x", "", ""}));
  EXPECT_EQ(x.sub("abxd", "-"), "-a-b--d-");
  // Groups: findall returns them, '' for a group that did not take part.
  const PyRegex two("(a)|(b)", "test");
  const auto m = two.findall("ab");
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0], (std::vector<std::string>{"a", ""}));
  EXPECT_EQ(m[1], (std::vector<std::string>{"", "b"}));
  EXPECT_EQ(PyRegex("\\s+", "test").count_pieces(" a  b\n"), 4u);  // ['', 'a', 'b', '']
  EXPECT_EQ(PyRegex("\\d+", "test").sub("a١٢b3", "#"), "a#b#");    // \d is Unicode, as in Python 3
  EXPECT_EQ(PyRegex("(?s).*#### ", "test").sub("x\ny #### 42"), "42");
  // Raw bytes of a byte-level model are matched as their lossy decode, as Python holds them.
  const auto words = PyRegex("(\\w+)", "test").findall("ab\xff\xfe cd\xc3");
  ASSERT_EQ(words.size(), 2u);
  EXPECT_EQ(words[1][0], "cd");
  EXPECT_EQ(PyRegex("x", "test").sub("a\xffx"), "a\xef\xbf\xbd");
}

TEST(AnswerFilters, GsmStrictAndFlexibleExtraction) {
  flowlm::eval::AnswerFilter strict{"strict-match", "#### (\\-?[0-9\\.\\,]+)", 0, "[invalid]", false};
  flowlm::eval::AnswerFilter flexible{"flexible-extract", "(-?[$0-9.,]{2,})|(-?[0-9]+)", -1, "[invalid]",
                                      false};
  EXPECT_EQ(flowlm::eval::apply_filter(strict, "so 3 + 4 = 7\n#### 1,234"), "1,234");
  EXPECT_EQ(flowlm::eval::apply_filter(strict, "the answer is 7"), "[invalid]");
  EXPECT_EQ(flowlm::eval::apply_filter(flexible, "I have 3 apples and 42 pears"), "42");
  EXPECT_EQ(flowlm::eval::apply_filter(flexible, "I have 3 apples and 4 pears"), "4");  // the second group
  flowlm::eval::AnswerFilter ws{"ws", "", 0, "", true};
  EXPECT_EQ(flowlm::eval::apply_filter(ws, "  \t answer "), "answer ");
  flowlm::eval::ExactMatchOptions gsm;
  gsm.ignore_case = true;
  gsm.regexes_to_ignore = {",", "\\$", "(?s).*#### ", "\\.$"};
  EXPECT_EQ(flowlm::eval::exact_match("1,234", "She has\n#### 1234", gsm), 1.0);
  EXPECT_EQ(flowlm::eval::exact_match("$1234.", "#### 1234", gsm), 1.0);
  EXPECT_EQ(flowlm::eval::exact_match("1235", "#### 1234", gsm), 0.0);
  flowlm::eval::ExactMatchOptions punct;
  punct.ignore_punctuation = true;
  punct.ignore_case = true;
  EXPECT_EQ(flowlm::eval::exact_match("Paris!", "paris", punct), 1.0);
  EXPECT_EQ(flowlm::eval::exact_match("Paris!", "paris", {}), 0.0);
  EXPECT_EQ(flowlm::eval::cut_at_stops("one. two\n\nthree", {"\n\n", "."}), "one");
  EXPECT_EQ(flowlm::eval::cut_at_stops("no stop", {"", "x"}), "no stop");
}

TEST(TextCounts, WordsAndCharactersAsPython) {
  EXPECT_EQ(flowlm::eval::count_words("The quick  fox "), 4);  // re.split: ['The', 'quick', 'fox', '']
  EXPECT_EQ(flowlm::eval::count_words(""), 1);
  EXPECT_EQ(flowlm::eval::count_words("a\u00a0b\u3000c"), 3);  // Unicode spaces count
  EXPECT_EQ(flowlm::eval::count_chars("café"), 4);
  EXPECT_EQ(std::string("café").size(), 5u);
}

TEST(TextCodec, TrailingWhitespaceMovesToTheContinuation) {
  const flowlm::data::ByteTokenizer tok;
  const flowlm::eval::TextCodec codec(tok, false);
  const auto r = codec.encode_pair("Answer: ", "yes");
  EXPECT_EQ(std::string(r.context.begin(), r.context.end()), "Answer:");
  EXPECT_EQ(std::string(r.continuation.begin(), r.continuation.end()), " yes");
  const auto e = codec.encode_pair("", "hi");
  EXPECT_EQ(e.context, (flowlm::eval::Tokens{0}));  // the prefix token: no BOS, so EOS
  // add_bos: contexts start with the prefix token, continuations do not.
  const flowlm::eval::TextCodec framed(tok, false, true);
  const auto f = framed.encode_pair("Answer: ", "yes");
  EXPECT_EQ(f.context, (flowlm::eval::Tokens{0, 'A', 'n', 's', 'w', 'e', 'r', ':'}));
  EXPECT_EQ(std::string(f.continuation.begin(), f.continuation.end()), " yes");
  EXPECT_EQ(framed.encode_context("x"), (flowlm::eval::Tokens{0, 'x'}));
  EXPECT_EQ(framed.encode("x"), (flowlm::eval::Tokens{'x'}));
}

TEST(RollingWindows, CoverTheDocumentOnceInWindowsOfTheModelLength) {
  flowlm::eval::Tokens doc(23);
  std::iota(doc.begin(), doc.end(), 100);
  const auto w = flowlm::eval::rolling_windows(doc, 7, 8);
  ASSERT_EQ(w.size(), 3u);  // 8 + 8 + 7 predicted
  EXPECT_EQ(w[0].context, (flowlm::eval::Tokens{7}));
  flowlm::eval::Tokens covered;
  for (const auto& r : w) {
    covered.insert(covered.end(), r.continuation.begin(), r.continuation.end());
    // Each request is one forward of context + continuation minus the last token: at most 8.
    EXPECT_LE(r.context.size() + r.continuation.size() - 1, 8u);
  }
  EXPECT_EQ(covered, doc);
  // A window after the first conditions on the 8 tokens before its last prediction (lm-eval).
  EXPECT_EQ(w[2].context, flowlm::eval::Tokens(doc.begin() + 14, doc.begin() + 16));
  EXPECT_TRUE(flowlm::eval::rolling_windows({}, 7, 8).empty());
}

TEST(Metrics, StandardErrorsAndPairedDifferences) {
  const std::vector<double> x{1, 0, 1, 1, 0, 1, 0, 1};
  const auto m = flowlm::eval::mean_metric("acc", x);
  EXPECT_DOUBLE_EQ(m.value, 5.0 / 8);
  double ss = 0;
  for (const double v : x) ss += (v - 5.0 / 8) * (v - 5.0 / 8);
  EXPECT_NEAR(m.stderr_, std::sqrt(ss / 7) / std::sqrt(8.0), 1e-15);
  EXPECT_TRUE(std::isnan(flowlm::eval::mean_metric("acc", {1.0}).stderr_));
  const std::vector<double> y{1, 1, 1, 1, 0, 1, 0, 1};
  const auto d = flowlm::eval::paired_delta(m, flowlm::eval::mean_metric("acc", y));
  EXPECT_DOUBLE_EQ(d.delta, 1.0 / 8);
  EXPECT_NEAR(d.stderr_, flowlm::eval::standard_error({0, 1, 0, 0, 0, 0, 0, 0}), 1e-15);
  // The ratio's delta-method error against a direct propagation on a perturbed item.
  const std::vector<double> nll{10, 20, 5, 40}, bytes{8, 15, 6, 30};
  const auto bpb = flowlm::eval::ratio_metric("bits_per_byte", nll, bytes, flowlm::eval::RatioForm::per_ln2);
  EXPECT_NEAR(bpb.value, 75.0 / 59 / std::log(2.0), 1e-12);
  const double h = 1e-6;
  std::vector<double> nll2 = nll;
  nll2[1] += h;
  const auto bumped = flowlm::eval::ratio_metric("b", nll2, bytes, flowlm::eval::RatioForm::per_ln2);
  // d(value)/d(num_1) = g'(R) / sum(den) = influence_1's num coefficient / n.
  EXPECT_NEAR((bumped.value - bpb.value) / h, 1.0 / std::log(2.0) / 59, 1e-6);
  EXPECT_GT(bpb.stderr_, 0);
  const auto ppl = flowlm::eval::ratio_metric("ppl", nll, bytes, flowlm::eval::RatioForm::exp);
  EXPECT_NEAR(ppl.value, std::exp(75.0 / 59), 1e-9);
  EXPECT_EQ(flowlm::eval::paired_delta(ppl, ppl).stderr_, 0.0);
  EXPECT_THROW(flowlm::eval::paired_delta(m, ppl), flowlm::Error);
}

// The engine's log-likelihoods against log-softmax of one full forward per request, with
// truncation from the left once context + continuation exceeds block_size + 1.
TEST(Engine, LoglikelihoodsEqualAPlainComputation) {
  for (const std::string family : {"gpt2", "llama"}) {
    flowlm::model::Transformer m(flowlm::testing::families().at(family));
    m.init_random(5);
    const index_t V = m.config().vocab_size, L = m.config().block_size;  // 37, 16
    std::vector<flowlm::eval::TokenRequest> reqs;
    std::mt19937 rng(3);
    std::uniform_int_distribution<std::int32_t> tok(0, static_cast<std::int32_t>(V) - 1);
    for (const auto& [c, n] :
         std::vector<std::pair<int, int>>{{3, 2}, {1, 1}, {10, 5}, {15, 4}, {2, 16}, {7, 3}}) {
      flowlm::eval::TokenRequest r;
      for (int i = 0; i < c; ++i) r.context.push_back(tok(rng));
      for (int i = 0; i < n; ++i) r.continuation.push_back(tok(rng));
      reqs.push_back(r);
    }
    flowlm::eval::Engine engine(m, 4, flowlm::comm::Communicator::self());
    const auto got = engine.loglikelihood(reqs);
    for (std::size_t i = 0; i < reqs.size(); ++i) {
      flowlm::eval::Tokens all = reqs[i].context;
      all.insert(all.end(), reqs[i].continuation.begin(), reqs[i].continuation.end());
      if (static_cast<index_t>(all.size()) > L + 1) all.erase(all.begin(), all.end() - (L + 1));
      const auto T = static_cast<index_t>(all.size()) - 1;
      m.forward(all.data(), nullptr, nullptr, 1, T, false);
      const float* lg = m.logits();
      double want = 0;
      bool greedy = true;
      for (index_t t = T - static_cast<index_t>(reqs[i].continuation.size()); t < T; ++t) {
        const float* row = lg + t * V;
        double mx = row[0], z = 0;
        for (index_t v = 0; v < V; ++v) mx = std::max(mx, static_cast<double>(row[v]));
        for (index_t v = 0; v < V; ++v) z += std::exp(row[v] - mx);
        want += row[all[static_cast<std::size_t>(t + 1)]] - mx - std::log(z);
        greedy = greedy && std::max_element(row, row + V) - row == all[static_cast<std::size_t>(t + 1)];
      }
      EXPECT_NEAR(got[i].logprob, want, 1e-4) << family << " request " << i;
      EXPECT_EQ(got[i].greedy, greedy) << family << " request " << i;
    }
    flowlm::eval::TokenRequest too_long{{1}, flowlm::eval::Tokens(static_cast<std::size_t>(L + 1), 2)};
    EXPECT_TRUE(contains(thrown<flowlm::DataError>([&] { engine.loglikelihood({too_long}); }), "block_size"));
  }
}

}  // namespace
