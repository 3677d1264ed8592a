#include "stages/stage.hpp"
#include "train/trainer.hpp"

namespace flowlm::stages {

void run_train(const StageContext& ctx) { train::run_training(ctx.job, ctx.world); }

}  // namespace flowlm::stages
