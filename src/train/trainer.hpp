// The data-parallel training loop behind `flowlm train`: every rank runs its own micro-batches,
// gradients are all-reduced in buckets, and the optimizer step is identical on every rank.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"

namespace flowlm::model {
class Transformer;
}

namespace flowlm::train {

/// \brief Bytes one rank holds for a training run of `job` (the trainer's memory report).
struct TrainMemory {
  double weights = 0, grads = 0, moments = 0, copies = 0, activations = 0, lora = 0;
  std::int64_t moment_params = 0;  ///< parameters whose AdamW moments the rank keeps
  double total() const { return weights + grads + moments + copies + activations + lora; }
};

/// \brief What a rank of a `ranks`-rank run of `job` holds, for `model` built as the trainer
/// builds it (LoRA enabled if the job has it): with optim.zero_stage = 1 the moments of the
/// largest ZeRO-1 slice. Allocates nothing.
TrainMemory train_memory(const model::Transformer& model, const config::JobConfig& job, int ranks);

/// \brief What a finished (or interrupted) run reports back, for tests and the demo.
struct TrainSummary {
  std::int64_t first_step = 0;  ///< step the run started from (0, or the resumed checkpoint's)
  std::int64_t last_step = 0;
  std::vector<double> losses;  ///< training loss of each step this process ran, in order
  std::optional<double> final_val_loss;
  std::vector<std::filesystem::path> checkpoints;  ///< written by this run
};

/// \brief Runs `flowlm train` for one job on `world`. Collective: every rank calls it.
TrainSummary run_training(const config::JobConfig& job, const comm::Communicator& world);

}  // namespace flowlm::train
