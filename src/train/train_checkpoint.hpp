// Training checkpoints of a run dir: what `flowlm train` writes at a save step (weights, AdamW
// moments, the data cursor; beside it the EMA weights) and reads back on resume.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "data/loader.hpp"
#include "model/transformer.hpp"
#include "train/optimizer.hpp"
#include "train/weight_copies.hpp"

namespace flowlm::train {

/// \brief The run state a checkpoint carries besides tensors.
struct TrainState {
  std::int64_t step = 0;
  std::int64_t tokens_seen = 0;
  data::LoaderCursor cursor;
  std::string lora_base_fingerprint;  ///< LoRA runs: weights_fingerprint of model.init_from
};

/// \brief `ema_step_00001000.h5`: the EMA weights saved beside the checkpoint of that step.
std::string ema_checkpoint_name(std::int64_t step);

/// \brief Writes `<run.dir>/step_<step>.h5` (and with `ema` its EMA file) through temp files, then
/// prunes to checkpoint.keep_last. A model with LoRA saves its adapters and names its base
/// (model.init_from; see model/checkpoint.hpp). `job` is recorded as config_toml. Collective. Returns the
/// path.
std::filesystem::path save_train_checkpoint(const config::JobConfig& job, const TrainState& state,
                                            const model::Transformer& model, const AdamW& opt,
                                            const WeightEma* ema, const comm::Communicator& world);

/// \brief The newest valid checkpoint of run.dir loaded into `model` and `opt` (moments and step
/// count); nullopt when the dir has none. Any rank count may resume (bitwise at the saved one, to
/// float rounding at another); ConfigError when the job changes what the data order depends on
/// (train.global_batch, train.seq_len, run.seed, finetune.train_set).
struct Resumed {
  std::filesystem::path file;
  TrainState state;
};
std::optional<Resumed> resume_train_checkpoint(const config::JobConfig& job, model::Transformer& model,
                                               AdamW& opt, const comm::Communicator& world);

}  // namespace flowlm::train
