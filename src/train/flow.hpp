// FLOW ("Upweighting Easy Samples in Fine-Tuning Mitigates Forgetting"): score every
// fine-tuning sample with the pre-trained model, weight it by w_i = exp(-l_i / tau), and
// fine-tune with the weighted loss (trainer.cpp). DESIGN.md "FLOW scoring and weighting".
//
// The scoring pass is rank-count invariant bit for bit: samples go through the model in
// fixed global groups of `batch` (group g = samples [g*batch, (g+1)*batch), padded to the
// group's longest sample), ranks take contiguous runs of whole groups, and tau and the mean
// are computed on every rank from ALL losses gathered in global order (MPI allgatherv).
// The gather costs 8 bytes per sample on every rank (8 MB per million samples), far below
// the sample set itself; it buys an exact quantile and a sum whose order does not depend
// on the number of ranks, which an all-reduce of partial sums would not give.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/types.hpp"
#include "data/sampleset.hpp"

namespace flowlm::train {

/// \brief The q-quantile of `values` with linear interpolation between order statistics
/// (numpy's default; q = 0.5 is the median). DataError when values is empty.
double quantile(std::vector<double> values, double q);

/// \brief tau for `spec` over all losses: the median, the given value, or the quantile.
/// DataError when the result is not > 0 (e.g. every loss is 0).
double resolve_tau(const config::TauSpec& spec, const std::vector<double>& losses);

/// \brief w_i = exp(-l_i / tau); normalize = "mean" divides by the mean weight (summed in
/// index order), "none" keeps the raw weights in (0, 1]. `mean_out` gets the raw mean.
std::vector<double> flow_weights(const std::vector<double>& losses, double tau, const std::string& normalize,
                                 double* mean_out = nullptr);

/// \brief What a scoring pass produced (every rank holds all of it).
struct ScoreResult {
  std::vector<double> loss, weight;
  std::vector<float> token_loss;  ///< every answer token's loss, samples in order, tokens in position order
  std::vector<std::int64_t> n_tokens;
  double tau = 0, raw_mean_weight = 0;
  std::string normalize, fingerprint;
  std::int64_t answer_tokens = 0;
  double seconds = 0;  ///< wall time of the forward passes (slowest rank)
  double tokens_per_s() const;
  std::int64_t input_tokens = 0;  ///< every model input token (prompt + answer), all ranks
};

/// \brief Runs the scoring pass of `checkpoint` over `sample_set` on `world` (collective) and,
/// when `output` is not empty, writes scores.h5 with parallel HDF5 (each rank its rows) or
/// through rank 0 on serial builds: datasets loss, weight (float64 [N]), n_tokens (int64
/// [N]) and token_loss (float32 [answer tokens], sample by sample); attrs kind = "scores", tau, tau_spec,
/// normalization, checkpoint, checkpoint_step, sample_set, fingerprint, n_samples and min/median/mean/max of
/// loss and weight.
ScoreResult score_samples(const std::filesystem::path& checkpoint, const std::filesystem::path& sample_set,
                          const config::FlowConfig& flow, std::int64_t batch,
                          const std::filesystem::path& output, const comm::Communicator& world);

/// \brief A scores file as the trainer needs it.
struct Scores {
  std::vector<double> loss, weight;
  std::vector<std::int64_t> n_tokens;  ///< answer tokens per sample
  std::vector<float> token_loss;       ///< empty in files written before per-token losses were kept
  std::string fingerprint, normalization;
  double tau = 0;
};

/// \brief The FLOW weights the trainer uses, resolved when training starts from the losses in a
/// scores file and the job's flow.* (so one scoring pass serves a sweep over tau or granularity).
struct FlowWeights {
  std::vector<double> sample;             ///< w_i per sample (all 1 for granularity = token)
  std::vector<double> token;              ///< w_it per answer token (empty for granularity = sample)
  std::vector<std::int64_t> token_start;  ///< first entry of sample i in `token`
  double tau_sample = 0, tau_token = 0;   ///< 0 where not used
};
/// \brief w_i = exp(-l_i / tau_s), w_it = exp(-l_it / tau_t), tau of each from flow.tau over its own
/// losses (sample losses, token losses), each normalised by its own mean with normalize = "mean".
/// DataError naming `file` when token weights are asked of a file without per-token losses.
FlowWeights resolve_flow_weights(const Scores& scores, const config::FlowConfig& flow,
                                 const std::string& file);
/// \brief Reads scores.h5 and checks it belongs to the sample set (count and fingerprint):
/// DataError naming both files otherwise.
Scores read_scores(const std::filesystem::path& scores, const std::filesystem::path& sample_set);
/// \brief Checks that `scores` fits the whole sample set `set` sample by sample (the answer tokens
/// the trainer weights): DataError naming both files otherwise. The fingerprint read_scores checks
/// is only an attribute; this keeps a foreign or edited scores file from mis-weighting samples.
void check_scores_match(const Scores& scores, const data::SampleSet& set, const std::string& scores_file,
                        const std::string& set_file);

}  // namespace flowlm::train
