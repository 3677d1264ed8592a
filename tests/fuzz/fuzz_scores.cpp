// Scores files (src/train/flow.cpp): read_scores and resolve_flow_weights as the trainer calls
// them (make_batch_source), on well-formed HDF5 files whose contents the input decides (a recipe,
// see h5_spec.hpp, with two files: "set.h5", the sample set, and "scores.h5"). What is accepted
// must be safe for the trainer's walk over every sample's answer tokens (SampleSource), with
// finite, non-negative weights.
#include <fmt/format.h>

#include <cmath>

#include "data/sampleset.hpp"
#include "fuzz.hpp"
#include "h5_spec.hpp"
#include "train/flow.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace flowlm;
  const fuzz::H5Spec spec = fuzz::parse_h5_spec(fuzz::as_text(data, size), "scores.h5");
  if (!fuzz::write_h5_spec(spec, {"set.h5", "scores.h5"})) return 0;
  const auto set_path = fuzz::scratch_dir() / "set.h5";
  const auto scores_path = fuzz::scratch_dir() / "scores.h5";
  return fuzz::run([&] {
    const data::SampleSet set = data::read_sample_set(set_path);
    const train::Scores scores = train::read_scores(scores_path, set_path);
    train::check_scores_match(scores, set, scores_path.string(), set_path.string());
    for (const char* granularity : {"sample", "token", "both"}) {
      config::FlowConfig flow;
      flow.granularity = granularity;
      train::FlowWeights w;
      try {
        w = train::resolve_flow_weights(scores, flow, scores_path.string());
      } catch (const Error&) {
        continue;
      }
      FLOWLM_FUZZ_CHECK(static_cast<index_t>(w.sample.size()) == set.size(),
                        fmt::format("{} sample weights for {} samples", w.sample.size(), set.size()));
      for (const double x : w.sample)
        FLOWLM_FUZZ_CHECK(std::isfinite(x) && x >= 0, fmt::format("weight {}", x));
      if (w.token.empty()) continue;
      for (const double x : w.token)
        FLOWLM_FUZZ_CHECK(std::isfinite(x) && x >= 0, fmt::format("weight {}", x));
      // SampleSource::micro_batch reads answer_tokens(i) weights from token_start[i] on.
      for (index_t i = 0; i < set.size(); ++i) {
        const std::int64_t b = w.token_start[static_cast<std::size_t>(i)], n = set.answer_tokens(i);
        FLOWLM_FUZZ_CHECK(
            b >= 0 && b + n <= static_cast<std::int64_t>(w.token.size()),
            fmt::format("sample {}: token weights [{}, {}) of {}", i, b, b + n, w.token.size()));
      }
    }
  });
}
