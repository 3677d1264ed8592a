// Tokenizer unit tests that need no Python: the byte tokenizer, UTF-8 repair, small hand-made
// tokenizer.json files (byte-level and SentencePiece-style BPE, encodings worked out by hand),
// malformed files (errors name the file and the JSON key), decode of ids out of range, model
// directories, prompt templates and the framing prepare puts around documents and samples.
// The comparisons with the real libraries are tests/hf/tokenizers/check_tokenizers.py.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "core/error.hpp"
#include "data/prepare.hpp"
#include "data/sampleset.hpp"
#include "data/shard.hpp"
#include "data/tokenizer.hpp"
#include "support/testing.hpp"

using namespace flowlm;
using namespace flowlm::data;
using flowlm::testing::contains;
using flowlm::testing::thrown;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary);
  out << s;
}

/// GPT-2's byte -> character table, written out independently of the library's.
std::string byte_char(int b) {
  int n = 0, cp = -1;
  for (int x = 0; x < 256; ++x) {
    const bool printable = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
    const int c = printable ? x : 256 + n++;
    if (x == b) cp = c;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

/// Byte-level BPE as GPT-2: byte b has id b; Ġt 256, he 257, Ġthe 258, <|endoftext|> 259.
json gpt2_like() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  vocab["Ġt"] = 256;
  vocab["he"] = 257;
  vocab["Ġthe"] = 258;
  vocab["<|endoftext|>"] = 259;
  return {{"version", "1.0"},
          {"added_tokens",
           {{{"id", 259}, {"content", "<|endoftext|>"}, {"special", true}, {"normalized", false}}}},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"post_processor", {{"type", "ByteLevel"}, {"trim_offsets", false}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"Ġ t", "h e", "Ġt he"}}}}};
}

/// SentencePiece-style BPE as transformers converts Llama 2: <unk> 0, <s> 1, </s> 2, <0x00>..<0xFF>
/// 3..258, ▁ 259, a 260, b 261, ▁a 262.
json llama_like() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) vocab[fmt::format("<0x{:02X}>", b)] = 3 + b;
  vocab["▁"] = 259;
  vocab["a"] = 260;
  vocab["b"] = 261;
  vocab["▁a"] = 262;
  const auto special = [](int id, const char* c) {
    return json{{"id", id}, {"content", c}, {"special", true}, {"normalized", false}};
  };
  return {{"added_tokens", {special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")}},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", "▁"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}}},
          {"pre_tokenizer", nullptr},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair", json::array()},
            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"unk_token", "<unk>"},
            {"fuse_unk", true},
            {"byte_fallback", true},
            {"vocab", vocab},
            {"merges", json::array({json::array({"▁", "a"})})}}}};
}

fs::path save(const flowlm::testing::TempDir& dir, const std::string& name, const json& j) {
  const fs::path d = dir / name;
  fs::create_directories(d);
  write_text(d / "tokenizer.json", j.dump());
  return d / "tokenizer.json";
}

using Ids = std::vector<TokenId>;

}  // namespace

// ---- byte tokenizer and UTF-8 ------------------------------------------------------------

TEST(Tokenizer, ByteTokenizerKeepsEveryByte) {
  const auto tok = make_tokenizer("byte");
  EXPECT_EQ(tok->kind(), "byte");
  EXPECT_EQ(tok->vocab_size(), 256);
  EXPECT_EQ(tok->eot(), 0);
  EXPECT_FALSE(tok->bos());
  const std::string text = "caf\xc3\xa9 \xff\xfe ok";  // invalid UTF-8 stays as it is
  const auto ids = tok->encode(text, true);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(ids[6], 0xff);
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_EQ(tok->decode({0, 'a', 0}, true), "a");
  EXPECT_EQ(tok->pre_tokenize(text), std::vector<std::string>{text});
  const auto msg = thrown<DataError>([&] { tok->decode({65, 300}); });
  EXPECT_TRUE(contains(msg, "300") && contains(msg, "index 1")) << msg;
  const Framing f = framing_of(*tok);
  EXPECT_EQ(f.start, Ids{0});
  EXPECT_TRUE(f.end.empty());
}

TEST(Tokenizer, SanitizeUtf8ReplacesMaximalSubparts) {
  std::string out = "untouched";
  EXPECT_FALSE(sanitize_utf8("plain ascii, caf\xc3\xa9, \xf0\x9f\x98\x80", out));
  EXPECT_EQ(out, "untouched");
  // The Unicode Standard's example (chapter 3, "U+FFFD substitution of maximal subparts").
  ASSERT_TRUE(sanitize_utf8("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64", out));
  EXPECT_EQ(out,
            "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
            "b\xEF\xBF\xBD"
            "c\xEF\xBF\xBD\xEF\xBF\xBD"
            "d");
  const std::string r = "\xEF\xBF\xBD";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"\xc0\xaf", r + r},                  // overlong: C0 is never valid
      {"\xe0\x80\xaf", r + r + r},          // E0 needs A0..BF next
      {"\xed\xa0\x80", r + r + r},          // a surrogate
      {"\xf4\x90\x80\x80", r + r + r + r},  // above U+10FFFF
      {"\xe2\x82", r},                      // truncated at the end
      {"\xf0\x9f\x98"
       "x",
       r + "x"},  // truncated in the middle
  };
  for (const auto& [in, want] : cases) {
    ASSERT_TRUE(sanitize_utf8(in, out));
    EXPECT_EQ(out, want);
  }
}

// ---- tokenizer.json: byte-level BPE --------------------------------------------------------

TEST(Tokenizer, ByteLevelBpeByHand) {
  const flowlm::testing::TempDir dir("flowlm-tok");
  const auto file = save(dir, "gpt2", gpt2_like());
  const auto tok = make_tokenizer(file.string());
  EXPECT_EQ(tok->kind(), "tokenizer.json");
  EXPECT_EQ(tok->vocab_size(), 260);
  // "the": t h e -> t he; " the": Ġ t h e -> Ġt h e (rank 0) -> Ġt he (rank 1) -> Ġthe (rank 2).
  EXPECT_EQ(tok->encode("the the"), (Ids{'t', 257, 258}));
  EXPECT_EQ(tok->pre_tokenize("the the"), (std::vector<std::string>{"the", " the"}));
  // The special token is matched inside words and before pre-tokenization.
  EXPECT_EQ(tok->encode("x<|endoftext|> the"), (Ids{'x', 259, 258}));
  EXPECT_EQ(tok->decode({'t', 257, 258}), "the the");
  EXPECT_EQ(tok->decode({'x', 259, 258}), "x<|endoftext|> the");
  EXPECT_EQ(tok->decode({'x', 259, 258}, true), "x the");
  // A byte sequence that is not UTF-8 decodes to U+FFFD; é split in two is two halves of nothing.
  EXPECT_EQ(tok->decode({0xc3}), "\xEF\xBF\xBD");
  EXPECT_EQ(tok->decode({0xc3, 0xa9}), "\xc3\xa9");
  // Invalid input bytes are read as U+FFFD (EF BF BD): three byte tokens.
  EXPECT_EQ(tok->encode("\xff"), (Ids{0xef, 0xbf, 0xbd}));
  EXPECT_EQ(tok->eos(), 259);  // by its name: no tokenizer_config.json here
  EXPECT_FALSE(tok->bos());
  const auto msg = thrown<DataError>([&] { tok->decode({1, 260}); });
  EXPECT_TRUE(contains(msg, "260") && contains(msg, "index 1") && contains(msg, "vocab_size 260")) << msg;
  EXPECT_THROW(tok->decode({-1}), DataError);
  EXPECT_EQ(framing_of(*tok).start, Ids{259});
  EXPECT_TRUE(framing_of(*tok).end.empty());
}

TEST(Tokenizer, SentencePieceStyleBpeByHand) {
  const flowlm::testing::TempDir dir("flowlm-tok");
  const auto file = save(dir, "llama", llama_like());
  const auto tok = make_tokenizer(file.parent_path().string());  // the directory resolves to tokenizer.json
  // "a b" -> "▁a▁b", one word: ▁ a ▁ b -> ▁a ▁ b.
  EXPECT_EQ(tok->encode("a b"), (Ids{262, 259, 261}));
  EXPECT_EQ(tok->encode("a b", true), (Ids{1, 262, 259, 261}));
  // é is not in the vocabulary: its bytes C3 A9 as <0xC3> <0xA9>.
  EXPECT_EQ(tok->encode("a\xc3\xa9"), (Ids{262, 3 + 0xc3, 3 + 0xa9}));
  // Each piece between special tokens gets its own "▁" (the legacy Llama behaviour).
  EXPECT_EQ(tok->encode("a</s>b"), (Ids{262, 2, 259, 261}));
  EXPECT_EQ(tok->decode({1, 262, 3 + 0xc3, 3 + 0xa9}), "<s> a\xc3\xa9");
  EXPECT_EQ(tok->decode({1, 262, 3 + 0xc3, 3 + 0xa9}, true), "a\xc3\xa9");
  EXPECT_EQ(tok->decode({262, 3 + 0xc3}), "a\xEF\xBF\xBD");  // a lone byte is U+FFFD
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  EXPECT_EQ(tok->special_prefix(), Ids{1});
  const Framing f = framing_of(*tok);
  EXPECT_EQ(f.start, Ids{1});
  EXPECT_EQ(f.end, Ids{2});
}

TEST(Tokenizer, TokenizerConfigNamesTheSpecialTokens) {
  const flowlm::testing::TempDir dir("flowlm-tok");
  const auto file = save(dir, "cfg", llama_like());
  write_text(file.parent_path() / "tokenizer_config.json",
             R"({"bos_token": {"content": "</s>"}, "eos_token": "<s>", "pad_token": "<unk>"})");
  auto tok = make_tokenizer(file.string());
  EXPECT_EQ(tok->bos(), 2);
  EXPECT_EQ(tok->eos(), 1);
  EXPECT_EQ(tok->pad(), 0);
  write_text(file.parent_path() / "tokenizer_config.json", R"({"eos_token": "<|nope|>"})");
  const auto msg = thrown<ConfigError>([&] { make_tokenizer(file.string()); });
  EXPECT_TRUE(contains(msg, "tokenizer_config.json") && contains(msg, "eos_token") &&
              contains(msg, "<|nope|>"))
      << msg;
}

// ---- malformed and unsupported files --------------------------------------------------------

TEST(Tokenizer, MalformedFilesNameTheFileAndTheKey) {
  const flowlm::testing::TempDir dir("flowlm-tok");
  struct Case {
    const char* what;
    std::function<void(json&)> edit;
    std::vector<std::string> needles;
  };
  const std::vector<Case> cases = {
      {"unknown model", [](json& j) { j["model"]["type"] = "Unigram"; }, {"model.type", "Unigram", "BPE"}},
      {"no model", [](json& j) { j.erase("model"); }, {"model", "missing"}},
      {"normalizer",
       [](json& j) {
         j["normalizer"] = {{"type", "Lowercase"}};
       },
       {"normalizer.type", "Lowercase"}},
      {"nested pre-tokenizer",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Sequence"},
                               {"pretokenizers", {j["pre_tokenizer"], {{"type", "Whitespace"}}}}};
       },
       {"pre_tokenizer.pretokenizers[1].type", "Whitespace", "ByteLevel last"}},
      {"pre-tokenizer",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
       },
       {"pre_tokenizer.type", "BertPreTokenizer", "supported"}},
      {"decoder",
       [](json& j) {
         j["decoder"] = {{"type", "WordPiece"}};
       },
       {"decoder.type", "WordPiece"}},
      {"bad regex",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Split"},
                               {"pattern", {{"Regex", "(unclosed"}}},
                               {"behavior", "Isolated"},
                               {"invert", false}};
       },
       {"pre_tokenizer.pattern.Regex", "(unclosed", "does not compile"}},
      {"behavior",
       [](json& j) {
         j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Sideways"}};
       },
       {"pre_tokenizer.behavior", "Sideways"}},
      {"merge of unknown tokens",
       [](json& j) { j["model"]["merges"][0] = "Ġ zz"; },
       {"model.merges[0]", "zz"}},
      {"merge syntax", [](json& j) { j["model"]["merges"][1] = 7; }, {"model.merges[1]", "7"}},
      {"vocab id", [](json& j) { j["model"]["vocab"]["he"] = -3; }, {"model.vocab[\"he\"]", "-3"}},
      {"dropout", [](json& j) { j["model"]["dropout"] = 0.1; }, {"model.dropout", "0.1"}},
      {"post-processor",
       [](json& j) {
         j["post_processor"] = {
             {"type", "TemplateProcessing"},
             {"single", {{{"SpecialToken", {{"id", "<bos>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
             {"special_tokens", json::object()}};
       },
       {"post_processor.special_tokens.<bos>", "missing"}},
      {"post-processor type",
       [](json& j) {
         j["post_processor"] = {{"type", "Magic"}};
       },
       {"post_processor.type", "Magic"}},
      {"added token", [](json& j) { j["added_tokens"][0]["content"] = 5; }, {"added_tokens[0].content", "5"}},
  };
  for (const auto& c : cases) {
    json j = gpt2_like();
    c.edit(j);
    const auto file = save(dir, "bad", j);
    const auto msg = thrown<ConfigError>([&] { make_tokenizer(file.string()); });
    EXPECT_TRUE(contains(msg, file.string())) << c.what << ": " << msg;
    for (const auto& n : c.needles)
      EXPECT_TRUE(contains(msg, n)) << c.what << ": '" << n << "' not in: " << msg;
  }
  write_text(dir / "broken.json", "{\"model\": ");
  const auto msg = thrown<ConfigError>([&] { make_tokenizer((dir / "broken.json").string()); });
  EXPECT_TRUE(contains(msg, "broken.json") && contains(msg, "not valid JSON")) << msg;
}

TEST(Tokenizer, PathsAndDirectories) {
  const flowlm::testing::TempDir dir("flowlm-tok");
  auto msg = thrown<ConfigError>([] { make_tokenizer("wordpiece"); });
  EXPECT_TRUE(contains(msg, "wordpiece") && contains(msg, "byte")) << msg;
  msg = thrown<ConfigError>([] { make_tokenizer("gpt2"); });
  EXPECT_TRUE(contains(msg, "gpt2") && contains(msg, "encoder.json")) << msg;
  fs::create_directories(dir / "empty");
  msg = thrown<ConfigError>([&] { make_tokenizer((dir / "empty").string()); });
  EXPECT_TRUE(contains(msg, "empty") && contains(msg, "tokenizer.json")) << msg;
  // GPT-2's encoder.json + vocab.bpe: the same model as the tokenizer.json above.
  const json j = gpt2_like();
  fs::create_directories(dir / "pair");
  write_text(dir / "pair" / "encoder.json", j["model"]["vocab"].dump());
  write_text(dir / "pair" / "vocab.bpe", "#version: 0.2\nĠ t\nh e\nĠt he\n");
  EXPECT_EQ(resolve_tokenizer_file(dir / "pair").filename(), "encoder.json");
  const auto tok = make_tokenizer((dir / "pair").string());
  EXPECT_EQ(tok->kind(), "gpt2-bpe");
  EXPECT_EQ(tok->encode("x<|endoftext|> the"), (Ids{'x', 259, 258}));
  EXPECT_EQ(tok->decode({'t', 257, 258}), "the the");
  write_text(dir / "pair" / "vocab.bpe", "#version: 0.2\nĠ t\nh e q\n");
  msg = thrown<ConfigError>([&] { make_tokenizer((dir / "pair").string()); });
  EXPECT_TRUE(contains(msg, "vocab.bpe") && contains(msg, "model.merges[1]") && contains(msg, "h e q"))
      << msg;
  write_text(dir / "junk.model", "not a protobuf");
  msg = thrown<ConfigError>([&] { make_tokenizer((dir / "junk.model").string()); });
  EXPECT_TRUE(contains(msg, "junk.model") && contains(msg, "SentencePiece")) << msg;
}

// ---- templates and samples -------------------------------------------------------------------

TEST(Tokenizer, PromptTemplates) {
  EXPECT_EQ(prompt_template("none"), "{prompt}");
  EXPECT_EQ(apply_prompt_template(prompt_template("none"), "2+2?"), "2+2?");
  const std::string alpaca = apply_prompt_template(prompt_template("alpaca"), "Add 2 and 2.");
  EXPECT_EQ(
      alpaca,
      "Below is an instruction that describes a task. Write a response that appropriately completes the "
      "request.\n\n### Instruction:\nAdd 2 and 2.\n\n### Response:");
  EXPECT_EQ(apply_prompt_template(prompt_template("Q: {prompt}\nQ again: {prompt}\nA:"), "x"),
            "Q: x\nQ again: x\nA:");
  const auto msg = thrown<ConfigError>([] { prompt_template("Question:"); });
  EXPECT_TRUE(contains(msg, "prepare.template") && contains(msg, "{prompt}")) << msg;
}

TEST(Tokenizer, SamplesAreFramedAndTemplated) {
  const ByteTokenizer byte;
  const Framing fb = framing_of(byte);
  std::vector<std::int32_t> s;
  std::int64_t a = 0;
  bool truncated = false;
  ASSERT_TRUE(build_sample(byte, fb, "Q:{prompt}|", {"hi", "yo"}, 64, Overlong::error, "f: record 1", s, a,
                           truncated));
  EXPECT_EQ(s, (std::vector<std::int32_t>{0, 'Q', ':', 'h', 'i', '|', 'y', 'o', 0}));
  EXPECT_EQ(a, 6);
  ASSERT_TRUE(
      build_sample(byte, fb, "{prompt}", {"hi", "abcdef"}, 5, Overlong::truncate, "x", s, a, truncated));
  EXPECT_TRUE(truncated);
  EXPECT_EQ(s.size(), 6u);
  EXPECT_FALSE(
      build_sample(byte, fb, "{prompt}", {"long prompt", "z"}, 5, Overlong::truncate, "x", s, a, truncated));
  auto msg = thrown<DataError>([&] {
    build_sample(byte, fb, "{prompt}", {"p", ""}, 5, Overlong::error, "f.jsonl: record 3", s, a, truncated);
  });
  EXPECT_TRUE(contains(msg, "f.jsonl: record 3") && contains(msg, "empty answer")) << msg;
  msg = thrown<DataError>([&] {
    build_sample(byte, fb, "{prompt}", {"ppppp", "aa"}, 5, Overlong::error, "g: record 2", s, a, truncated);
  });
  EXPECT_TRUE(contains(msg, "g: record 2") && contains(msg, "block_size = 5")) << msg;

  // Llama-style: <s> prompt answer </s>.
  const flowlm::testing::TempDir dir("flowlm-tok");
  const auto tok = make_tokenizer(save(dir, "llama", llama_like()).string());
  ASSERT_TRUE(build_sample(*tok, framing_of(*tok), "{prompt}", {"a", "b"}, 64, Overlong::error, "x", s, a,
                           truncated));
  EXPECT_EQ(s, (std::vector<std::int32_t>{1, 262, 259, 261, 2}));
  EXPECT_EQ(a, 2);
}

TEST(Tokenizer, PrepareWithATokenizerFile) {
  const flowlm::testing::TempDir dir("flowlm-tok");
  const auto world = comm::Communicator::self();
  const auto tokfile = save(dir, "llama", llama_like());
  write_text(dir / "doc.txt", "a b");
  PrepareOptions o;
  o.inputs = {(dir / "doc.txt").string()};
  o.output_dir = dir / "out";
  o.name = "t";
  o.tokenizer = tokfile.parent_path().string();
  o.val_fraction = 0.0;
  const auto s = prepare_text_shards(o, world);
  EXPECT_EQ(s.vocab_size, 263);
  EXPECT_EQ(s.tokens, 5);
  const TokenShard sh(dir / "out" / "t_train_000000.bin", 263);
  EXPECT_EQ(sh.to_vector(), (std::vector<std::uint16_t>{1, 262, 259, 261, 2}));  // <s> text </s>

  write_jsonl(dir / "ft.jsonl", {{"a", "b"}, {"b", "a"}, {"a", "a b"}});
  JsonlPrepareOptions j;
  j.inputs = {(dir / "ft.jsonl").string()};
  j.output_dir = dir / "out";
  j.name = "ft";
  j.tokenizer = o.tokenizer;
  j.prompt_template = "a {prompt}";
  j.val_fraction = 0.34;
  j.block_size = 16;
  const auto js = prepare_jsonl_sample_sets(j, world);
  EXPECT_EQ(js.records, 3);
  EXPECT_EQ(js.val_samples, 1);
  EXPECT_EQ(js.train_samples, 2);
  const SampleSet val = read_sample_set(dir / "out" / "ft_val.h5");
  // <s> "▁a▁a" (template "a {prompt}" with prompt "a") "▁b" </s>; the answer starts at "▁b".
  EXPECT_EQ(val.tokens, (std::vector<std::int32_t>{1, 262, 262, 259, 261, 2}));
  EXPECT_EQ(val.answer_start[0], 3);
  EXPECT_EQ(val.tokenizer, o.tokenizer);
  EXPECT_EQ(val.vocab_size, 263);
  j.prompt_template = "no placeholder";
  EXPECT_THROW(prepare_jsonl_sample_sets(j, world), ConfigError);
}
