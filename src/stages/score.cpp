// `flowlm score job.toml`: the distributed scoring pass of FLOW -> scores.h5.
#include <filesystem>

#include "stages/stage.hpp"
#include "train/flow.hpp"

namespace flowlm::stages {

void run_score(const StageContext& ctx) {
  const auto& s = ctx.job.score;
  config::require_nonempty(s.checkpoint, "score.checkpoint", "score");
  config::require_nonempty(s.sample_set, "score.sample_set", "score");
  const std::filesystem::path out = s.output.empty() ? std::filesystem::path(ctx.job.run.dir) / "scores.h5"
                                                     : std::filesystem::path(s.output);
  train::score_samples(s.checkpoint, s.sample_set, ctx.job.flow, s.batch, out, ctx.world);
}

}  // namespace flowlm::stages
