#include "train/inherit.hpp"
#include "stages/stage.hpp"

namespace flowlm::stages {

void run_inherit(const StageContext& ctx) { train::run_inherit(ctx.job, ctx.world); }

}  // namespace flowlm::stages
