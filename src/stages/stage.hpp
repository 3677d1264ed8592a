// One function per stage. main.cpp parses the command line, loads the job file and calls
// the stage; a stage returns normally on success and throws flowlm::Error on failure.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "comm/comm.hpp"
#include "config/config.hpp"

namespace flowlm::stages {

/// \brief What every stage gets: the resolved job, where it came from, and the world.
struct StageContext {
  const config::JobConfig& job;
  std::filesystem::path job_file;  ///< empty for stages run without a job file
  comm::Communicator world;
};

void run_prepare(const StageContext& ctx);
void run_train(const StageContext& ctx);
/// \brief `flowlm inherit`: a small model from the first blocks of a larger checkpoint (inherit.*).
void run_inherit(const StageContext& ctx);
/// \brief `flowlm average`: LAWA / SWA / EMA / interpolation of saved checkpoints (average.*).
void run_average(const StageContext& ctx);
/// \brief `flowlm score`: per-sample losses of a pre-trained checkpoint and FLOW weights (score.*, flow.*).
void run_score(const StageContext& ctx);
/// \brief `flowlm eval`: loss / exact-match accuracy of checkpoints on eval sets, benchmark tasks with
/// standard errors, and the forgetting table of eval.compare (eval.*).
void run_eval(const StageContext& ctx);
/// \brief `flowlm generate`: completions of prompts with a KV cache (generate.*).
void run_generate(const StageContext& ctx);
/// \brief `flowlm demo`: where it writes and the seed of its synthetic corpus.
struct DemoOptions {
  std::filesystem::path dir = "runs/demo";
  std::uint64_t seed = 1;
};
/// \brief The embedded end-to-end pipeline (pretrain, LAWA, score, FLOW vs standard fine-tuning,
/// Inheritune, eval), printing one results table and writing plots into `opt.dir`.
void run_demo(const DemoOptions& opt, const comm::Communicator& world);

/// \brief `flowlm import <hf_dir> <out.h5>`: a Hugging Face model directory as a flowlm checkpoint.
void run_import(const std::filesystem::path& hf_dir, const std::filesystem::path& out,
                const comm::Communicator& world);
/// \brief `flowlm export <ckpt.h5> <hf_dir>` options, as given on the command line.
struct ExportArgs {
  std::string dtype = "f32";
  std::string architecture;
  double max_shard_gb = 5.0;
  std::filesystem::path tokenizer;
  bool adapter = false;
};
/// \brief `flowlm export <ckpt.h5> <hf_dir>`: a checkpoint as a Hugging Face model directory.
void run_export(const std::filesystem::path& checkpoint, const std::filesystem::path& hf_dir,
                const ExportArgs& args, const comm::Communicator& world);

/// \brief `flowlm inspect file.h5`: prints a readable summary of any flowlm HDF5 file.
void run_inspect(const std::filesystem::path& file, const comm::Communicator& world);

}  // namespace flowlm::stages
