// Where a training step's data comes from: fixed-length token windows (pretraining) or padded
// prompt/answer samples with optional per-sample weights (fine-tuning: standard, l2_init, FLOW).
#pragma once

#include <cstdint>
#include <memory>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/types.hpp"
#include "data/loader.hpp"

namespace flowlm::train {

/// \brief One micro-batch ready for forward/backward, host memory owned by the source (valid until
/// the next micro_batch call): per-token loss weights (mask x sample weight, all 1 for windows) and
/// the upstream gradients dlosses = weights / (the step's loss denominator).
struct MicroBatch {
  index_t B = 0, T = 0;
  const std::int32_t *inputs = nullptr, *targets = nullptr;
  const float *mask = nullptr, *weights = nullptr, *dlosses = nullptr;
  const index_t* sample_ids = nullptr;  ///< [B] global sample index of each row (samples only)
};

/// \brief The step's data on one rank. The step loss is sum(weights * token losses) over the
/// global batch / begin_step(). Every rank calls the same members in the same order.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual index_t grad_accum_steps() const = 0;
  /// \brief Prepares the current step; returns the loss denominator of the whole global batch.
  virtual double begin_step() = 0;
  virtual MicroBatch micro_batch(index_t m) = 0;
  /// \brief Input tokens the whole step (all ranks) processes.
  virtual std::int64_t step_tokens() const = 0;
  virtual void advance_step() = 0;
  virtual data::LoaderCursor cursor() const = 0;
  virtual void restore(data::LoaderCursor c) = 0;
};

/// \brief The source `job` asks for: token windows from data.train, or finetune.train_set with the
/// FLOW weights of finetune.scores. Checks the set against the model (vocabulary, block size) and
/// throws ConfigError / DataError naming the file, key and value.
std::unique_ptr<BatchSource> make_batch_source(const config::JobConfig& job, const comm::Communicator& world);

}  // namespace flowlm::train
