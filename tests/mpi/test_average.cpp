// `flowlm average` at np 1/2/4 on hand-made checkpoints: every mode gives the float64 weighted
// sum of its inputs rounded once to fp32, bitwise the same as a one-rank run; outputs record
// their sources; mismatched architectures and empty selections are clear errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "support/testing.hpp"
#include "train/average.hpp"

namespace {

using flowlm::Shape;
using flowlm::comm::Communicator;
namespace fs = std::filesystem;

const std::vector<std::pair<std::string, Shape>> kTensors = {{"transformer.wte.weight", {5, 3}},
                                                             {"transformer.h.0.attn.c_attn.bias", {7}},
                                                             {"transformer.ln_f.weight", {2, 2, 2}}};

/// A value no two (step, tensor, element) share, with a fractional part that does not average exactly.
float value(std::int64_t step, std::size_t tensor, std::size_t e) {
  return static_cast<float>(std::sin(0.37 * static_cast<double>(step) + 1.3 * static_cast<double>(tensor) +
                                     0.11 * static_cast<double>(e)) *
                            (1.0 + static_cast<double>(step) / 7.0));
}

void write_hand_made(const fs::path& path, std::int64_t step,
                     const std::vector<std::pair<std::string, Shape>>& tensors = kTensors) {
  std::vector<std::vector<float>> data;
  std::vector<flowlm::io::TensorRef> refs;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    data.emplace_back(static_cast<std::size_t>(flowlm::shape_numel(tensors[t].second)));
    for (std::size_t e = 0; e < data.back().size(); ++e) data.back()[e] = value(step, t, e);
  }
  for (std::size_t t = 0; t < tensors.size(); ++t)
    refs.push_back({tensors[t].first, tensors[t].second, data[t].data(), 0});
  flowlm::io::CheckpointMeta meta;
  meta.step = step;
  meta.tokens_seen = step * 100;
  meta.config_toml = "[model]\nn_layer = 1\n";
  meta.data_cursor = {step * 8};
  flowlm::io::write_checkpoint(path, meta, refs, {}, Communicator::self());
}

class AverageMpi : public ::testing::Test {
 protected:
  void SetUp() override {
    if (world.is_root())
      for (std::int64_t s = 10; s <= 60; s += 10) write_hand_made(run() / flowlm::io::checkpoint_name(s), s);
    world.barrier();
  }
  fs::path run() const { return dir / "run"; }

  flowlm::config::JobConfig job(const std::string& out, const std::vector<std::string>& sets) const {
    const std::string toml =
        "[run]\ndir = '" + run().string() + "'\n[average]\noutput_dir = '" + (dir / out).string() + "'\n";
    return flowlm::config::parse_job(toml, "test job", sets);
  }

  /// Runs the job on the world, then (rank 0) checks every output against `expected` (weights
  /// over steps, computed here) and against a one-rank run of the same job, bitwise.
  void run_and_check(
      const std::vector<std::string>& sets,
      const std::vector<std::pair<std::string, std::vector<std::pair<std::int64_t, double>>>>& expected) {
    const auto written = flowlm::train::run_average(job("out", sets), world);
    ASSERT_EQ(written.size(), expected.size());
    if (world.is_root()) {
      const auto one = flowlm::train::run_average(job("one", sets), Communicator::self());
      ASSERT_EQ(one.size(), expected.size());
      for (std::size_t o = 0; o < expected.size(); ++o) {
        EXPECT_EQ(written[o].filename().string(), expected[o].first);
        const flowlm::io::CheckpointReader got(written[o]), ref(one[o]);
        const auto& terms = expected[o].second;
        EXPECT_EQ(got.meta().step, terms.back().first);
        const auto steps =
            nlohmann::json::parse(got.meta().extra.at("source_steps")).get<std::vector<std::int64_t>>();
        const auto sources =
            nlohmann::json::parse(got.meta().extra.at("sources")).get<std::vector<std::string>>();
        ASSERT_EQ(steps.size(), terms.size());
        ASSERT_EQ(sources.size(), terms.size());
        for (std::size_t j = 0; j < terms.size(); ++j) {
          EXPECT_EQ(steps[j], terms[j].first);
          EXPECT_EQ(fs::path(sources[j]).filename().string(), flowlm::io::checkpoint_name(terms[j].first));
        }
        EXPECT_EQ(got.meta().extra.at("kind"), "average");
        EXPECT_EQ(got.tensors("optim").size(), 0u);
        ASSERT_EQ(got.tensors("model").size(), kTensors.size());
        for (std::size_t t = 0; t < kTensors.size(); ++t) {
          const auto a = got.read("model", kTensors[t].first), b = ref.read("model", kTensors[t].first);
          EXPECT_EQ(a.shape, kTensors[t].second);
          EXPECT_EQ(a.data, b.data) << "np " << world.size() << " differs from np 1 in " << kTensors[t].first;
          for (std::size_t e = 0; e < a.data.size(); ++e) {
            double want = 0;
            for (const auto& [step, w] : terms) want += w * static_cast<double>(value(step, t, e));
            // fp32 of the float64 sum: within half an fp32 ulp (plus float64 rounding).
            EXPECT_NEAR(a.data[e], want, 0.51 * std::abs(want) * 1.2e-7 + 1e-30)
                << expected[o].first << " " << kTensors[t].first << "[" << e << "]";
          }
        }
      }
    }
    world.barrier();
  }

  Communicator world = Communicator::world();
  flowlm::testing::TempDir dir{"flowlm-average", /*shared=*/true};
};

std::vector<std::pair<std::int64_t, double>> uniform(const std::vector<std::int64_t>& steps) {
  std::vector<std::pair<std::int64_t, double>> t;
  for (const auto s : steps) t.emplace_back(s, 1.0 / static_cast<double>(steps.size()));
  return t;
}

TEST_F(AverageMpi, LawaSlidingWindowOfTheLastK) {
  run_and_check({"average.mode=lawa", "average.k=3"}, {{"lawa_k3_step_00000030.h5", uniform({10, 20, 30})},
                                                       {"lawa_k3_step_00000040.h5", uniform({20, 30, 40})},
                                                       {"lawa_k3_step_00000050.h5", uniform({30, 40, 50})},
                                                       {"lawa_k3_step_00000060.h5", uniform({40, 50, 60})}});
  if (world.is_root()) {
    const flowlm::io::CheckpointReader r(dir / "out" / "lawa_k3_step_00000060.h5");
    EXPECT_EQ(r.meta().extra.at("mode"), "lawa");
    EXPECT_EQ(r.meta().extra.at("k"), "3");
    EXPECT_EQ(r.meta().tokens_seen, 6000);  // from the window's last checkpoint
  }
}

TEST_F(AverageMpi, LawaSpacedAndGrouped) {
  run_and_check({"average.k=2", "average.every=20"}, {{"lawa_k2_step_00000030.h5", uniform({10, 30})},
                                                      {"lawa_k2_step_00000040.h5", uniform({20, 40})},
                                                      {"lawa_k2_step_00000050.h5", uniform({30, 50})},
                                                      {"lawa_k2_step_00000060.h5", uniform({40, 60})}});
}

TEST_F(AverageMpi, LawaGroupedNeverShareACheckpoint) {
  run_and_check({"average.k=2", "average.grouped=true"}, {{"lawa_k2_step_00000020.h5", uniform({10, 20})},
                                                          {"lawa_k2_step_00000040.h5", uniform({30, 40})},
                                                          {"lawa_k2_step_00000060.h5", uniform({50, 60})}});
}

TEST_F(AverageMpi, SwaOverAStepRange) {
  run_and_check({"average.mode=swa", "average.start_step=20", "average.end_step=50"},
                {{"swa_step_00000050.h5", uniform({20, 30, 40, 50})}});
}

TEST_F(AverageMpi, EmaFollowsTheRecurrence) {
  // e_0 = w_0, e_i = d e_{i-1} + (1 - d) w_i, unrolled here independently of the library.
  const double d = 0.7;
  std::vector<std::pair<std::int64_t, double>> terms;
  for (std::int64_t s = 30; s <= 60; s += 10) {
    for (auto& t : terms) t.second *= d;
    terms.emplace_back(s, terms.empty() ? 1.0 : 1.0 - d);
  }
  run_and_check({"average.mode=ema", "average.decay=0.7", "average.start_step=30"},
                {{"ema_d0.7_step_00000060.h5", terms}});
}

TEST_F(AverageMpi, InterpolateBetweenTwoCheckpoints) {
  const std::string a = (run() / flowlm::io::checkpoint_name(60)).string();
  const std::string b = (run() / flowlm::io::checkpoint_name(10)).string();
  const auto set_inputs = "average.inputs=['" + a + "', '" + b + "']";
  // Interpolation keeps the given order (A first), not step order.
  run_and_check({"average.mode=interpolate", set_inputs, "average.alphas=[0.0, 0.25, 1.0]"},
                {{"interp_alpha_0.h5", {{60, 0.0}, {10, 1.0}}},
                 {"interp_alpha_0.25.h5", {{60, 0.25}, {10, 0.75}}},
                 {"interp_alpha_1.h5", {{60, 1.0}, {10, 0.0}}}});
}

TEST_F(AverageMpi, MismatchedArchitecturesAreRefused) {
  if (world.is_root()) {
    auto other = kTensors;
    other[1].second = {8};
    write_hand_made(dir / "bad_shape" / flowlm::io::checkpoint_name(70), 70, other);
    other = kTensors;
    other[2].first = "transformer.ln_f.bias";
    write_hand_made(dir / "bad_name" / flowlm::io::checkpoint_name(70), 70, other);
    other = kTensors;
    other.pop_back();
    write_hand_made(dir / "fewer" / flowlm::io::checkpoint_name(70), 70, other);
  }
  world.barrier();
  for (const std::string bad : {"bad_shape", "bad_name", "fewer"}) {
    const auto set_inputs = "average.inputs=['" + run().string() + "', '" + (dir / bad).string() + "']";
    try {
      flowlm::train::run_average(job("mismatch", {"average.mode=swa", set_inputs}), world);
      ADD_FAILURE() << bad << ": no error";
    } catch (const flowlm::ConfigError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(flowlm::io::checkpoint_name(70)), std::string::npos) << msg;
      EXPECT_NE(msg.find("one architecture"), std::string::npos) << msg;
    }
    // Nothing was written.
    EXPECT_FALSE(fs::exists(dir / "mismatch" / "swa_step_00000070.h5"));
  }
  world.barrier();
}

TEST_F(AverageMpi, EmptySelectionsAreClearErrors) {
  try {
    flowlm::train::run_average(job("none", {"average.k=2", "average.every=15"}), world);
    ADD_FAILURE() << "no error for a spacing that no two checkpoints have";
  } catch (const flowlm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("average.every = 15"), std::string::npos) << e.what();
  }
  EXPECT_THROW(flowlm::train::run_average(job("none", {"average.k=7"}), world), flowlm::ConfigError);
  EXPECT_THROW(flowlm::train::run_average(job("none", {"average.mode=swa", "average.start_step=61"}), world),
               flowlm::ConfigError);
  EXPECT_THROW(flowlm::train::run_average(job("none", {"average.mode=interpolate"}), world),
               flowlm::ConfigError);
  EXPECT_THROW(flowlm::train::run_average(
                   job("none", {"average.inputs=['" + (dir / "nothing").string() + "']"}), world),
               flowlm::IoError);
  world.barrier();
}

TEST(AverageOwners, BalancedBySizeAndDeterministic) {
  const std::vector<std::pair<std::string, Shape>> ts = {{"a", {100}}, {"b", {10}}, {"c", {60}}, {"d", {50}}};
  EXPECT_EQ(flowlm::train::balance_owners(ts, 2), (std::vector<int>{0, 0, 1, 1}));
  EXPECT_EQ(flowlm::train::balance_owners(ts, 1), (std::vector<int>{0, 0, 0, 0}));
  EXPECT_EQ(flowlm::train::balance_owners(ts, 4), (std::vector<int>{0, 3, 1, 2}));
}

}  // namespace
