#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/error.hpp"
#include "support/testing.hpp"

namespace cfg = flowlm::config;
using flowlm::ConfigError;
using flowlm::IoError;

namespace {

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

/// The message of the ConfigError that parse_job throws; fails the test when none is thrown.
// The message of the ConfigError that parsing `text` for the train stage (which checks every
// relation between keys) throws.
std::string config_error(const std::string& text, const std::vector<std::string>& overrides = {}) {
  try {
    cfg::check_stage(cfg::parse_job(text, "job.toml", overrides), "train");
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError for:\n" << text;
  return {};
}

// The keys the brief promises other modules; the schema must keep every one.
const std::vector<std::string> kPromisedKeys = {"run.dir",
                                                "run.seed",
                                                "data.train",
                                                "data.val",
                                                "data.vocab_size",
                                                "prepare.inputs",
                                                "prepare.output_dir",
                                                "prepare.name",
                                                "prepare.tokenizer",
                                                "prepare.val_fraction",
                                                "prepare.shard_tokens",
                                                "model.n_layer",
                                                "model.n_head",
                                                "model.n_embd",
                                                "model.vocab_size",
                                                "model.block_size",
                                                "model.init_from",
                                                "optim.lr",
                                                "optim.min_lr",
                                                "optim.weight_decay",
                                                "optim.beta1",
                                                "optim.beta2",
                                                "optim.eps",
                                                "optim.grad_clip",
                                                "optim.schedule",
                                                "optim.warmup_steps",
                                                "optim.decay_fraction",
                                                "optim.decay_embeddings",
                                                "train.global_batch",
                                                "train.micro_batch",
                                                "train.seq_len",
                                                "train.max_steps",
                                                "train.log_every",
                                                "train.val_every",
                                                "train.val_batches",
                                                "train.resume",
                                                "checkpoint.save_every",
                                                "checkpoint.save_steps",
                                                "checkpoint.keep_last",
                                                "checkpoint.save_final"};

cfg::JobConfig unusual_config() {
  cfg::JobConfig c;
  c.run.dir = "runs/a \"quoted\" \\ back\nslash\ttab \xc3\xa9 \x01";
  c.run.seed = 0;
  c.data.train = {"shards/train_*.bin", "more/x.bin"};
  c.data.val = {"v.bin"};
  c.data.vocab_size = 50257;
  c.prepare.inputs = {"a.txt", ""};
  c.prepare.tokenizer = "gpt2";
  c.prepare.val_fraction = 0.0;
  c.prepare.shard_tokens = 1024;
  c.model.n_layer = 12;
  c.model.n_head = 12;
  c.model.n_embd = 768;
  c.model.vocab_size = 50304;
  c.model.block_size = 1024;
  c.model.init_from = "ckpt/step_00001000.h5";
  c.optim.lr = 1e-8;
  c.optim.min_lr = 0.0;
  c.optim.beta1 = 0.1 + 0.2;  // needs all 17 digits to round-trip
  c.optim.eps = 1e-300;
  c.optim.grad_clip = 3.0;
  c.optim.schedule = "wsd";
  c.optim.warmup_steps = 0;
  c.optim.decay_fraction = 1.0 / 3.0;
  c.optim.decay_embeddings = true;
  c.train.global_batch = 512;
  c.train.micro_batch = 16;
  c.train.seq_len = 1024;
  c.train.max_steps = 9223372036854775807LL;
  c.train.val_every = 0;
  c.train.resume = true;
  c.checkpoint.save_every = 250;
  c.checkpoint.save_steps = {1, 2, 4, 8};
  c.checkpoint.keep_last = 3;
  c.checkpoint.save_final = false;
  return c;
}

}  // namespace

TEST(Config, EmptyFileGivesDefaults) {
  const auto c = cfg::parse_job("", "empty.toml");
  EXPECT_EQ(c, cfg::JobConfig{});
  EXPECT_EQ(c.optim.lr, 6e-4);
  EXPECT_EQ(c.run.dir, "runs/default");
  EXPECT_TRUE(c.data.train.empty());
}

TEST(Config, DefaultsRoundTrip) {
  const cfg::JobConfig d;
  const std::string text = cfg::to_toml(d);
  const auto back = cfg::parse_job(text, "resolved.toml");
  EXPECT_EQ(back, d) << text;
  EXPECT_TRUE(cfg::changed_keys(back, d).empty());
  for (const auto& key : cfg::all_keys()) {
    const std::string leaf = key.substr(key.rfind('.') + 1);  // sections may be dotted: finetune.lora
    EXPECT_TRUE(contains(text, "\n" + leaf + " = ")) << key;
  }
}

TEST(Config, NestedSectionsParseInEveryForm) {
  for (const std::string& text :
       {std::string("[finetune.lora]\nr = 8\nalpha = 16\ntargets = [\"q_proj\"]\n"),
        std::string("[finetune]\nlora = {r = 8, alpha = 16, targets = [\"q_proj\"]}\n")}) {
    const auto c = cfg::parse_job(text, "job.toml");
    EXPECT_EQ(c.finetune.lora.r, 8) << text;
    EXPECT_EQ(c.finetune.lora.alpha, 16.0) << text;
    EXPECT_EQ(c.finetune.lora.targets, std::vector<std::string>{"q_proj"}) << text;
    EXPECT_EQ(cfg::parse_job(cfg::to_toml(c), "resolved.toml"), c);
  }
  const auto set =
      cfg::parse_job("", "job.toml", {"finetune.lora.r=4", "finetune.lora.targets=[\"c_attn\"]"});
  EXPECT_EQ(set.finetune.lora.r, 4);
  EXPECT_EQ(set.finetune.lora.targets, std::vector<std::string>{"c_attn"});
}

TEST(Config, UnusualValuesRoundTrip) {
  const auto c = unusual_config();
  ASSERT_NE(c, cfg::JobConfig{});
  const std::string text = cfg::to_toml(c);
  const auto back = cfg::parse_job(text, "resolved.toml");
  EXPECT_EQ(back, c) << text;
  EXPECT_EQ(back.run.dir, c.run.dir);
  EXPECT_EQ(back.optim.beta1, 0.1 + 0.2);
  EXPECT_EQ(back.train.max_steps, 9223372036854775807LL);
  EXPECT_EQ(back.checkpoint.save_steps, (std::vector<std::int64_t>{1, 2, 4, 8}));
  EXPECT_EQ(cfg::to_toml(back), text);
}

TEST(Config, ChangedKeysNamesExactlyTheDifferences) {
  cfg::JobConfig a, b;
  b.optim.lr = 1e-3;
  b.checkpoint.save_steps = {5};
  b.data.val = {"x"};
  EXPECT_EQ(cfg::changed_keys(a, b),
            (std::vector<std::string>{"data.val", "optim.lr", "checkpoint.save_steps"}));
  EXPECT_NE(a, b);
}

TEST(Config, ParsesValuesIntoTypedFields) {
  const std::string text = R"(
[run]
dir = "runs/x"
seed = 7
[data]
train = ["a_*.bin", "b.bin"]
val = "v.bin"          # a single path is a one-element list
[model]
n_layer = 2
n_head = 4
n_embd = 64
block_size = 128
[optim]
lr = 1                 # an integer where a float is expected
schedule = "constant"
[train]
seq_len = 128
global_batch = 32
micro_batch = 4
[checkpoint]
save_steps = [10, 20]
save_final = false
)";
  const auto c = cfg::parse_job(text, "job.toml");
  EXPECT_EQ(c.run.dir, "runs/x");
  EXPECT_EQ(c.run.seed, 7);
  EXPECT_EQ(c.data.train, (std::vector<std::string>{"a_*.bin", "b.bin"}));
  EXPECT_EQ(c.data.val, (std::vector<std::string>{"v.bin"}));
  EXPECT_EQ(c.model.n_embd, 64);
  EXPECT_EQ(c.optim.lr, 1.0);
  EXPECT_EQ(c.optim.schedule, "constant");
  EXPECT_EQ(c.train.global_batch, 32);
  EXPECT_EQ(c.checkpoint.save_steps, (std::vector<std::int64_t>{10, 20}));
  EXPECT_FALSE(c.checkpoint.save_final);
  // Untouched keys keep their defaults.
  EXPECT_EQ(c.optim.min_lr, cfg::OptimConfig{}.min_lr);
  EXPECT_EQ(c.train.max_steps, cfg::TrainConfig{}.max_steps);
}

TEST(Config, OverridesApplyInOrderAndBeatTheFile) {
  const std::string text = "[optim]\nlr = 1e-3\n[run]\ndir = \"from_file\"\n";
  const auto c = cfg::parse_job(
      text, "job.toml",
      {"optim.lr=3e-4", "prepare.inputs=[\"a.txt\", \"b.txt\"]", "run.dir=\"x y\"", "run.dir=runs/a",
       " train.resume = true ", "checkpoint.save_steps=[10,20]", "data.train=shards/*.bin",
       "model.init_from=2024", "optim.grad_clip=2", "prepare.name=a=b"});
  EXPECT_EQ(c.optim.lr, 3e-4);
  EXPECT_EQ(c.prepare.inputs, (std::vector<std::string>{"a.txt", "b.txt"}));
  EXPECT_EQ(c.run.dir, "runs/a");  // the last override wins, verbatim text for strings
  EXPECT_TRUE(c.train.resume);
  EXPECT_EQ(c.checkpoint.save_steps, (std::vector<std::int64_t>{10, 20}));
  EXPECT_EQ(c.data.train, (std::vector<std::string>{"shards/*.bin"}));
  EXPECT_EQ(c.model.init_from, "2024");  // a string key keeps the text, not the number
  EXPECT_EQ(c.optim.grad_clip, 2.0);
  EXPECT_EQ(c.prepare.name, "a=b");  // split at the first '='
  EXPECT_EQ(
      cfg::changed_keys(cfg::JobConfig{}, c),
      (std::vector<std::string>{"run.dir", "data.train", "prepare.inputs", "prepare.name", "model.init_from",
                                "optim.lr", "optim.grad_clip", "train.resume", "checkpoint.save_steps"}));
}

TEST(Config, OverrideQuotedStringKeepsInnerText) {
  const auto c = cfg::parse_job("", "job.toml", {"run.dir=\"with # hash\""});
  EXPECT_EQ(c.run.dir, "with # hash");
}

TEST(Config, ReferenceMentionsEveryKeyAndParsesToDefaults) {
  const std::string ref = cfg::reference_toml();
  const auto keys = cfg::all_keys();
  for (const auto& key : kPromisedKeys)
    EXPECT_NE(std::find(keys.begin(), keys.end(), key), keys.end()) << "schema lost " << key;
  for (const auto& key : keys) {
    const auto dot = key.rfind('.');
    const std::string section = key.substr(0, dot), leaf = key.substr(dot + 1);
    const auto sec_pos = ref.find("\n[" + section + "]\n");
    ASSERT_NE(sec_pos, std::string::npos) << section;
    const auto next_sec = ref.find("\n[", sec_pos + 1);
    const auto key_pos = ref.find("\n" + leaf + " = ", sec_pos);
    EXPECT_TRUE(key_pos != std::string::npos && key_pos < next_sec)
        << key << " missing from [" << section << "]";
    // The line before the key is its doc comment.
    const auto doc_start = ref.rfind("\n# ", key_pos - 1);
    EXPECT_TRUE(doc_start != std::string::npos && doc_start > sec_pos) << key << " has no doc";
  }
  EXPECT_TRUE(contains(ref, "one of: cosine, constant, wsd"));
  EXPECT_TRUE(contains(ref, "(float, >= 0 and <= 0.5)"));
  EXPECT_TRUE(contains(ref, "(array of integers, >= 1)"));
  EXPECT_EQ(cfg::parse_job(ref, "reference.toml"), cfg::JobConfig{});
}

struct BadCase {
  const char* name;
  std::string toml;
  std::vector<std::string> overrides;
  std::vector<std::string> needles;  // every one must appear in the message
};

TEST(Config, MalformedInputsNameKeyAndValue) {
  const std::vector<BadCase> cases = {
      {"negative lr",
       "[optim]\nlr = -1\n",
       {},
       {"job.toml:2:6: ", "optim.lr = -1", "out of range (must be > 0)"}},
      {"typo key", "[optim]\nlrr = 0.1\n", {}, {"unknown key 'optim.lrr'", "(did you mean 'optim.lr'?)"}},
      {"string for int",
       "[train]\nmax_steps = \"ten\"\n",
       {},
       {"train.max_steps must be an integer", "string \"ten\""}},
      {"bad choice",
       "[prepare]\noverlong = \"bpe\"\n",
       {},
       {"prepare.overlong = \"bpe\" is not one of: error, truncate, drop"}},
      {"bad syntax", "[optim]\nlr = = 3\n", {}, {"job.toml:2:", "malformed TOML"}},
      {"unclosed table", "[optim\nlr = 1\n", {}, {"job.toml:1:", "malformed TOML"}},
      {"duplicate key", "[run]\nseed = 1\nseed = 2\n", {}, {"job.toml:3:", "malformed TOML", "seed"}},
      {"int overflow", "[model]\nblock_size = 99999999999999999999\n", {}, {"job.toml:2:", "malformed TOML"}},
      {"heads", "[model]\nn_embd = 100\nn_head = 6\n", {}, {"model.n_embd = 100", "model.n_head = 6"}},
      {"seq_len", "[train]\nseq_len = 512\n", {}, {"train.seq_len = 512", "model.block_size = 256"}},
      {"batch",
       "[train]\nglobal_batch = 10\nmicro_batch = 4\n",
       {},
       {"train.global_batch = 10", "train.micro_batch = 4"}},
      {"min_lr", "[optim]\nmin_lr = 1e-3\n", {}, {"optim.min_lr = 0.001", "optim.lr = 0.0006"}},
      {"warmup",
       "[optim]\nwarmup_steps = 2000\n",
       {},
       {"optim.warmup_steps = 2000", "train.max_steps = 1000"}},
      {"vocab", "[data]\nvocab_size = 50257\n", {}, {"data.vocab_size = 50257", "model.vocab_size = 256"}},
      {"val_fraction",
       "[prepare]\nval_fraction = 0.7\n",
       {},
       {"prepare.val_fraction = 0.7", "must be >= 0 and <= 0.5"}},
      {"shard_tokens",
       "[prepare]\nshard_tokens = 100\n",
       {},
       {"prepare.shard_tokens = 100", "must be >= 1024"}},
      {"beta2", "[optim]\nbeta2 = 1.0\n", {}, {"optim.beta2 = 1.0", "must be >= 0 and < 1"}},
      {"bool", "[train]\nresume = \"yes\"\n", {}, {"train.resume must be a boolean", "string \"yes\""}},
      {"int array for strings",
       "[data]\ntrain = [1, 2]\n",
       {},
       {"data.train must be an array of strings", "array", "1"}},
      {"negative save step",
       "[checkpoint]\nsave_steps = [100, -5]\n",
       {},
       {"checkpoint.save_steps[1] = -5", "must be >= 1"}},
      {"float save step",
       "[checkpoint]\nsave_steps = [100, 2.5]\n",
       {},
       {"checkpoint.save_steps must be an array of integers", "2.5"}},
      {"section not table", "optim = 5\n", {}, {"'optim' must be a table", "integer 5"}},
      {"unknown section", "[optimm]\nlr = 1\n", {}, {"unknown section 'optimm'", "(did you mean 'optim'?)"}},
      {"top-level key", "seed = 5\n", {}, {"unknown key 'seed'", "(did you mean 'run.seed'?)"}},
      {"wrong section", "[train]\nlr = 0.1\n", {}, {"unknown key 'train.lr'", "(did you mean 'optim.lr'?)"}},
      {"nan", "[optim]\nlr = nan\n", {}, {"optim.lr = nan", "not a finite number"}},
      {"sub-section typo",
       "[finetune.lora]\nrank = 8\n",
       {},
       {"unknown key 'finetune.lora.rank'", "(did you mean 'finetune.lora.r'?)"}},
      {"sub-section not table",
       "[finetune]\nlora = 8\n",
       {},
       {"'finetune.lora' must be a table", "integer 8"}},
      {"sub-section bad value",
       "[finetune]\nlora = {r = -1}\n",
       {},
       {"finetune.lora.r = -1", "out of range"}},
      {"inf", "[optim]\nweight_decay = inf\n", {}, {"optim.weight_decay = inf", "not a finite number"}},
      {"empty dir", "[run]\ndir = \"\"\n", {}, {"run.dir = \"\"", "must not be empty"}},
      {"float for int", "[model]\nn_layer = 2.0\n", {}, {"model.n_layer must be an integer", "float 2.0"}},
      {"case matters",
       "[optim]\nschedule = \"Cosine\"\n",
       {},
       {"optim.schedule = \"Cosine\"", "cosine, constant, wsd"}},
      {"date for float", "[optim]\nlr = 1979-05-27\n", {}, {"optim.lr must be a number", "date 1979-05-27"}},
      {"inline table for int",
       "[model]\nn_layer = {a = 1}\n",
       {},
       {"model.n_layer must be an integer", "table"}},
      {"set without =", "", {"optim.lr"}, {"--set optim.lr: expected section.key=value, got \"optim.lr\""}},
      {"set typo",
       "",
       {"optim.lrr=1"},
       {"--set optim.lrr: unknown key 'optim.lrr'", "(did you mean 'optim.lr'?)"}},
      {"set no section", "", {"lr=1"}, {"unknown key 'lr'", "(did you mean 'optim.lr'?)"}},
      {"set string for int",
       "",
       {"train.max_steps=ten"},
       {"--set train.max_steps: train.max_steps must be an integer", "string \"ten\""}},
      {"set out of range", "", {"optim.lr=-3"}, {"--set optim.lr: optim.lr = -3", "out of range"}},
      {"set bad choice", "", {"prepare.overlong=bpe"}, {"--set prepare.overlong", "\"bpe\" is not one of"}},
      {"set bad list",
       "",
       {"checkpoint.save_steps=[1, \"x\"]"},
       {"--set checkpoint.save_steps", "array of integers", "\"x\""}},
      {"set bad element",
       "",
       {"checkpoint.save_steps=[0]"},
       {"--set checkpoint.save_steps", "save_steps[0] = 0"}},
  };
  ASSERT_GE(cases.size(), 20u);
  for (const auto& c : cases) {
    const std::string msg = config_error(c.toml, c.overrides);
    for (const auto& needle : c.needles)
      EXPECT_TRUE(contains(msg, needle)) << c.name << ": '" << needle << "' not in: " << msg;
    const std::string prefix = c.overrides.empty() ? "job.toml" : "--set ";
    EXPECT_EQ(msg.rfind(prefix, 0), 0u)
        << c.name << ": message does not start with " << prefix << ": " << msg;
  }
}

TEST(Config, CrossChecksSeeOverrides) {
  // Each key alone is valid; the pair is not, whichever side the override changes.
  const std::string msg = config_error("[model]\nblock_size = 128\n", {"train.seq_len=256"});
  EXPECT_TRUE(contains(msg, "train.seq_len = 256")) << msg;
  EXPECT_NO_THROW(cfg::parse_job("[train]\nseq_len = 512\n", "job.toml", {"model.block_size=512"}));
}

TEST(Config, RelationsBelongToTheStageThatUsesThem) {
  // eval and score take the model from their checkpoint and prepare never trains: a job
  // whose [model] and [train] sections disagree holds back only the train stage.
  const auto job = cfg::parse_job(
      "[model]\nblock_size = 128\nn_embd = 100\nn_head = 6\n[train]\nseq_len = 256\n", "job.toml");
  for (const char* stage : {"prepare", "score", "eval", "average", "inherit"})
    EXPECT_NO_THROW(cfg::check_stage(job, stage)) << stage;
  EXPECT_THROW(cfg::check_stage(job, "train"), ConfigError);
}

TEST(Config, LoadJobReadsFileAndNamesItInErrors) {
  flowlm::testing::TempDir dir("flowlm-config");
  const auto path = dir / "job.toml";
  {
    std::ofstream out(path);
    out << "[train]\nmax_steps = 50\n[optim]\nwarmup_steps = 5\n";
  }
  const auto c = cfg::load_job(path, {"train.log_every=5"});
  EXPECT_EQ(c.train.max_steps, 50);
  EXPECT_EQ(c.train.log_every, 5);
  {
    std::ofstream out(path);
    out << "[train]\nmax_steps = 0\n";
  }
  try {
    cfg::load_job(path);
    ADD_FAILURE() << "max_steps = 0 accepted";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), path.string() + ":2:")) << e.what();
    EXPECT_TRUE(contains(e.what(), "train.max_steps = 0")) << e.what();
  }
}

TEST(Config, MissingFileIsIoErrorNamingPath) {
  flowlm::testing::TempDir dir("flowlm-config");
  const auto path = dir / "nope.toml";
  try {
    cfg::load_job(path);
    ADD_FAILURE() << "no error for a missing file";
  } catch (const IoError& e) {
    EXPECT_TRUE(contains(e.what(), path.string())) << e.what();
  }
  EXPECT_THROW(cfg::load_job(dir.path()), IoError);  // a directory is not a job file
}

TEST(Config, RequireNonemptyNamesKeyAndStage) {
  const cfg::JobConfig c;
  try {
    cfg::require_nonempty(c.prepare.inputs, "prepare.inputs", "prepare");
    ADD_FAILURE() << "empty prepare.inputs accepted";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "prepare.inputs")) << e.what();
    EXPECT_TRUE(contains(e.what(), "prepare stage")) << e.what();
  }
  EXPECT_THROW(cfg::require_nonempty(c.model.init_from, "model.init_from", "score"), ConfigError);
  EXPECT_NO_THROW(cfg::require_nonempty(std::vector<std::string>{"a"}, "prepare.inputs", "prepare"));
  EXPECT_NO_THROW(cfg::require_nonempty(c.run.dir, "run.dir", "train"));
}

TEST(Config, FlowTauIsMedianANumberOrAQuantile) {
  EXPECT_EQ(cfg::parse_job("", "job.toml").flow.tau.kind, cfg::TauSpec::Kind::median);
  const auto num = cfg::parse_job("[flow]\ntau = 2\n", "job.toml").flow.tau;
  EXPECT_EQ(num.kind, cfg::TauSpec::Kind::value);
  EXPECT_EQ(num.value, 2.0);
  const auto q = cfg::parse_job("[flow]\ntau = { quantile = 0.75 }\n", "job.toml").flow.tau;
  EXPECT_EQ(q.kind, cfg::TauSpec::Kind::quantile);
  EXPECT_EQ(q.value, 0.75);
  EXPECT_EQ(cfg::parse_job("[flow]\ntau = 'median'\n", "job.toml").flow.tau, cfg::TauSpec{});
  // Every form survives to_toml and back, and --set takes all three.
  for (const std::string v : {"\"median\"", "0.25", "{quantile = 0.1}"}) {
    const auto c = cfg::parse_job("[flow]\ntau = " + v + "\n", "job.toml");
    EXPECT_EQ(cfg::parse_job(cfg::to_toml(c), "resolved"), c) << v;
  }
  EXPECT_EQ(cfg::parse_job("", "job.toml", {"flow.tau=median"}).flow.tau, cfg::TauSpec{});
  EXPECT_EQ(cfg::parse_job("", "job.toml", {"flow.tau=1.5"}).flow.tau.value, 1.5);
  EXPECT_EQ(cfg::parse_job("", "job.toml", {"flow.tau={quantile=0.9}"}).flow.tau.kind,
            cfg::TauSpec::Kind::quantile);
  EXPECT_TRUE(contains(config_error("[flow]\ntau = 'mean'\n"), "\"mean\" is not understood")) << "string";
  EXPECT_TRUE(contains(config_error("[flow]\ntau = -1\n"), "must be a finite number > 0"));
  EXPECT_TRUE(contains(config_error("[flow]\ntau = { quantile = 1.5 }\n"), "flow.tau.quantile = 1.5"));
  EXPECT_TRUE(contains(config_error("[flow]\ntau = { q = 0.5 }\n"), "{quantile = q}"));
  EXPECT_TRUE(contains(config_error("[flow]\ntau = true\n"), "flow.tau must be"));
  EXPECT_TRUE(contains(cfg::reference_toml(), "tau = \"median\""));
}

TEST(Config, FineTuneScoreAndEvalSections) {
  const auto c = cfg::parse_job(
      "[finetune]\nmethod = 'flow'\ntrain_set = 'a.h5'\nscores = 's.h5'\nepochs = 3\n"
      "[score]\ncheckpoint = 'c.h5'\nsample_set = 'a.h5'\nbatch = 4\n"
      "[eval]\ncheckpoints = ['runs/x']\nsets = ['a.h5', 'val_*.bin']\nmax_samples = 10\n"
      "[prepare]\nformat = 'jsonl'\noverlong = 'drop'\nblock_size = 64\n",
      "job.toml");
  EXPECT_EQ(c.finetune.method, "flow");
  EXPECT_EQ(c.finetune.epochs, 3);
  EXPECT_EQ(c.score.batch, 4);
  EXPECT_EQ(c.eval.sets.size(), 2u);
  EXPECT_EQ(c.prepare.overlong, "drop");
  EXPECT_TRUE(contains(config_error("[finetune]\nmethod = 'lora'\n"), "finetune.method"));
  EXPECT_TRUE(contains(config_error("[flow]\nnormalize = 'sum'\n"), "flow.normalize"));
  EXPECT_TRUE(contains(config_error("[prepare]\noverlong = 'cut'\n"), "prepare.overlong"));
}
