// Weight averaging over saved checkpoints (`flowlm average`): LAWA (the last k checkpoints of a
// window, sliding or in non-overlapping groups), SWA (uniform mean over a step range), EMA over
// the saved sequence, and interpolation between two checkpoints (WiSE-FT). Every mode is a
// weighted sum of input checkpoints, computed tensor by tensor: each tensor has one owner rank
// (balanced by size), which reads it from every input in turn, accumulates in float64 and
// writes fp32 with parallel HDF5. A rank holds the output tensor it is writing plus two row
// chunks (~1M elements: one read buffer, one float64 accumulator).
//
// Outputs (in average.output_dir, default <run.dir>/averaged):
//   lawa         lawa_k<k>_step_<end step, 8 digits>.h5   one per window end
//   swa          swa_step_<last step>.h5
//   ema          ema_d<decay>_step_<last step>.h5        e_0 = w_0, e_i = d e_{i-1} + (1 - d) w_i
//   interpolate  interp_alpha_<alpha>.h5                  alpha * inputs[0] + (1 - alpha) * inputs[1]
// Root attrs: kind = "average", mode, sources (JSON list of paths), source_steps (JSON list),
// weights (JSON list), step (the window end / last step), plus the mode's parameters.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/types.hpp"

namespace flowlm::train {

/// \brief One input checkpoint and its step.
struct AverageSource {
  std::filesystem::path path;
  std::int64_t step = 0;
};

/// \brief One output checkpoint: sum_j weights[j] * sources[j], tensor by tensor.
struct AverageOutput {
  std::filesystem::path path;
  std::int64_t step = 0;  ///< recorded as the output's `step`
  std::vector<AverageSource> sources;
  std::vector<double> weights;               ///< one per source
  std::map<std::string, std::string> attrs;  ///< mode and its parameters (root attrs)
};

/// \brief Resolves average.inputs: a directory gives its step_*.h5 checkpoints, anything else
/// is a file or glob. Sorted by step unless `keep_order` (interpolate). IoError for an input
/// that matches nothing; ConfigError for two inputs at the same step (ambiguous order).
std::vector<AverageSource> resolve_average_inputs(const std::vector<std::string>& inputs, bool keep_order);

/// \brief The outputs `cfg.mode` makes from `sources` (sorted by step, except interpolate),
/// named as in the file comment under `output_dir`. ConfigError naming the key when the
/// selection is empty (no complete LAWA window, an empty step range, not two interpolate inputs).
std::vector<AverageOutput> plan_average(const config::AverageConfig& cfg,
                                        const std::vector<AverageSource>& sources,
                                        const std::filesystem::path& output_dir);

/// \brief The /model tensors of sources[0] after checking that every source has the same names
/// in the same order with the same shapes; ConfigError naming both files and the first
/// difference otherwise. Any rank, reads metadata only.
std::vector<std::pair<std::string, Shape>> check_same_architecture(const std::vector<AverageSource>& sources);

/// \brief Owner rank of each tensor: largest first onto the least-loaded rank (deterministic).
std::vector<int> balance_owners(const std::vector<std::pair<std::string, Shape>>& tensors, int ranks);

/// \brief Writes one output. Collective over `world`; the result is bitwise the same at any rank count.
void write_average(const AverageOutput& out, const comm::Communicator& world);

/// \brief `flowlm average`: resolves the inputs (default: run.dir), checks them, plans and
/// writes every output of job.average. Collective. Returns the written paths.
std::vector<std::filesystem::path> run_average(const config::JobConfig& job, const comm::Communicator& world);

}  // namespace flowlm::train
