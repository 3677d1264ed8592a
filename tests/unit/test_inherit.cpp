// Inheritune: the small model holds exactly the chosen source blocks and the chosen
// embeddings / final norm; everything else is the small model's own random init.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "model/transformer.hpp"
#include "support/testing.hpp"
#include "train/inherit.hpp"

namespace {

using flowlm::comm::Communicator;
namespace fs = std::filesystem;

const flowlm::model::ModelConfig kSource = flowlm::model::gpt2_config(4, 2, 8, 16, 12);

std::string source_toml(std::int64_t n_head) {
  return "[model]\nn_layer = 4\nn_head = " + std::to_string(n_head) +
         "\nn_embd = 8\nvocab_size = 16\nblock_size = 12\n[train]\nseq_len = 12\n[data]\nvocab_size = 16\n";
}

class Inherit : public ::testing::Test {
 protected:
  void SetUp() override {
    source.init_random(99);
    flowlm::io::CheckpointMeta meta;
    meta.step = 500;
    meta.config_toml = source_toml(2);
    meta.data_cursor = {0};
    std::vector<flowlm::io::TensorRef> refs;
    for (const auto& p : source.param_table())
      refs.push_back({p.name, p.shape, source.params() + p.offset, 0});
    flowlm::io::write_checkpoint(src_path(), meta, refs, {}, Communicator::self());
  }
  fs::path src_path() const { return dir / "big.h5"; }

  flowlm::config::JobConfig job(const std::vector<std::string>& sets) const {
    // The job's own model section differs from the source (n_head = 4): the source's wins.
    const std::string toml = "[run]\ndir = '" + (dir / "run").string() +
                             "'\nseed = 5\n[model]\nn_head = 4\n[inherit]\nfrom = '" + src_path().string() +
                             "'\n";
    return flowlm::config::parse_job(toml, "test job", sets);
  }

  /// Checks every tensor of `small` against the source block map and the copy flags.
  void expect_tensors(const flowlm::model::Transformer& small, const std::vector<std::int64_t>& blocks,
                      bool wte, bool wpe, bool lnf) {
    flowlm::model::Transformer fresh(small.config());
    fresh.init_random(5);  // what a tensor that is not copied must hold
    for (const auto& p : small.param_table()) {
      const float* got = small.params() + p.offset;
      const float* random = fresh.params() + p.offset;
      std::string src_name;
      bool copy = false;
      if (p.name.rfind("transformer.h.", 0) == 0) {
        const auto dot = p.name.find('.', 14);
        const auto l = std::stoul(p.name.substr(14, dot - 14));
        src_name = "transformer.h." + std::to_string(blocks.at(l)) + p.name.substr(dot);
        copy = true;
      } else {
        src_name = p.name;
        copy = (p.name == "transformer.wte.weight" && wte) || (p.name == "transformer.wpe.weight" && wpe) ||
               (p.name.rfind("transformer.ln_f.", 0) == 0 && lnf);
      }
      const float* expect = copy ? source.param(src_name) : random;
      for (flowlm::index_t i = 0; i < p.numel; ++i) ASSERT_EQ(got[i], expect[i]) << p.name << "[" << i << "]";
      // The test is only meaningful where source and random init differ (LayerNorm init is 1/0 in both).
      if (p.name.find("weight") != std::string::npos && p.name.find("ln") == std::string::npos) {
        bool differs = false;
        for (flowlm::index_t i = 0; i < p.numel; ++i) differs |= source.param(src_name)[i] != random[i];
        EXPECT_TRUE(differs) << p.name;
      }
    }
  }

  flowlm::model::Transformer source{kSource};
  flowlm::testing::TempDir dir{"flowlm-inherit"};
};

TEST_F(Inherit, DefaultCopiesTheFirstHalfAndEverythingElse) {
  const auto inh = flowlm::train::inherit_model(job({}).inherit, job({}), 5);
  EXPECT_EQ(inh.blocks, (std::vector<std::int64_t>{0, 1}));
  EXPECT_EQ(inh.gpt.config().n_layer, 2);
  EXPECT_EQ(inh.gpt.config().n_head, 2);  // from the source's config_toml, not the job's 4
  EXPECT_EQ(inh.gpt.config().n_embd, 8);
  EXPECT_EQ(inh.gpt.config().vocab_size, 16);
  EXPECT_EQ(inh.gpt.config().block_size, 12);
  EXPECT_TRUE(inh.initialized.empty());
  EXPECT_EQ(inh.copied.size(), inh.gpt.param_table().size());
  expect_tensors(inh.gpt, inh.blocks, true, true, true);
}

TEST_F(Inherit, ReferenceChoiceLeavesPositionEmbeddingAndFinalNormRandom) {
  const auto j = job({"inherit.layers=3", "inherit.position_embedding=false", "inherit.final_norm=false"});
  const auto inh = flowlm::train::inherit_model(j.inherit, j, 5);
  EXPECT_EQ(inh.blocks, (std::vector<std::int64_t>{0, 1, 2}));
  EXPECT_EQ(inh.initialized, (std::vector<std::string>{"transformer.wpe.weight", "transformer.ln_f.weight",
                                                       "transformer.ln_f.bias"}));
  expect_tensors(inh.gpt, inh.blocks, true, false, false);
}

TEST_F(Inherit, ExplicitBlocksInTheGivenOrder) {
  const auto j = job({"inherit.blocks=[3, 1]", "inherit.token_embedding=false", "inherit.head=false"});
  const auto inh = flowlm::train::inherit_model(j.inherit, j, 5);
  EXPECT_EQ(inh.blocks, (std::vector<std::int64_t>{3, 1}));
  expect_tensors(inh.gpt, inh.blocks, false, true, true);
}

TEST_F(Inherit, BadRequestsAreConfigErrors) {
  for (const auto& sets : std::vector<std::vector<std::string>>{{"inherit.layers=5"},
                                                                {"inherit.blocks=[0, 4]"},
                                                                {"inherit.blocks=[1, 1]"},
                                                                {"inherit.head=false"}}) {
    const auto j = job(sets);
    EXPECT_THROW(flowlm::train::inherit_model(j.inherit, j, 5), flowlm::ConfigError) << sets[0];
  }
  auto j = job({});
  j.inherit.from = "";
  EXPECT_THROW(flowlm::train::inherit_model(j.inherit, j, 5), flowlm::ConfigError);
  j.inherit.from = (dir / "missing.h5").string();
  EXPECT_THROW(flowlm::train::inherit_model(j.inherit, j, 5), flowlm::IoError);
}

TEST_F(Inherit, WritesASmallCheckpointWithItsProvenance) {
  const auto j = job({"inherit.layers=2", "inherit.final_norm=false"});
  const fs::path out = flowlm::train::run_inherit(j, Communicator::self());
  EXPECT_EQ(out, dir / "run" / "inherited.h5");
  const flowlm::io::CheckpointReader r(out);
  EXPECT_EQ(r.meta().step, 0);
  EXPECT_EQ(r.meta().extra.at("kind"), "inherit");
  EXPECT_EQ(r.meta().extra.at("inherit_source"), src_path().string());
  EXPECT_EQ(r.meta().extra.at("inherit_source_step"), "500");
  EXPECT_EQ(nlohmann::json::parse(r.meta().extra.at("inherit_blocks")), nlohmann::json({0, 1}));
  EXPECT_EQ(r.tensors("optim").size(), 0u);  // optimizer state is never copied
  const auto recorded = flowlm::config::parse_job(r.meta().config_toml, "inherited config_toml");
  EXPECT_EQ(recorded.model.n_layer, 2);
  EXPECT_EQ(recorded.model.n_head, 2);
  // Reading it back into a fresh 2-block model gives exactly the in-memory result.
  const auto inh = flowlm::train::inherit_model(j.inherit, j, 5);
  flowlm::model::Transformer loaded(inh.gpt.config());
  const auto listed = r.tensors("model");
  ASSERT_EQ(listed.size(), loaded.param_table().size());
  for (const auto& p : loaded.param_table()) r.read("model", p.name, p.shape, loaded.params() + p.offset);
  expect_tensors(loaded, {0, 1}, true, true, false);
}

TEST_F(Inherit, HeadCountFallsBackToTheJobWithoutASourceConfig) {
  std::vector<flowlm::io::TensorRef> refs;
  for (const auto& p : source.param_table()) refs.push_back({p.name, p.shape, source.params() + p.offset, 0});
  flowlm::io::CheckpointMeta meta;
  meta.data_cursor = {0};
  flowlm::io::write_checkpoint(dir / "bare.h5", meta, refs, {}, Communicator::self());
  const auto cfg = flowlm::model::read_model_config(flowlm::io::CheckpointReader(dir / "bare.h5"), 4);
  EXPECT_EQ(cfg.n_layer, 4);
  EXPECT_EQ(cfg.n_head, 4);
  EXPECT_EQ(cfg.n_embd, 8);
}

}  // namespace
