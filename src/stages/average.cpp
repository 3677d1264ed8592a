#include "train/average.hpp"
#include "stages/stage.hpp"

namespace flowlm::stages {

void run_average(const StageContext& ctx) { train::run_average(ctx.job, ctx.world); }

}  // namespace flowlm::stages
