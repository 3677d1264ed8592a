#include "train/flow.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <optional>

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/sampleset.hpp"
#include "flowlm/build_config.hpp"
#include "io/checkpoint.hpp"
#include "io/hdf5.hpp"
#include "train/evaluate.hpp"

namespace flowlm::train {
namespace fs = std::filesystem;
namespace h5 = io::h5;

double quantile(std::vector<double> values, double q) {
  if (values.empty()) fail<DataError>("quantile of an empty list of losses");
  std::sort(values.begin(), values.end());
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  const std::size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (pos - static_cast<double>(lo));
}

double resolve_tau(const config::TauSpec& spec, const std::vector<double>& losses) {
  double tau = spec.value;
  if (spec.kind == config::TauSpec::Kind::median) tau = quantile(losses, 0.5);
  if (spec.kind == config::TauSpec::Kind::quantile) tau = quantile(losses, spec.value);
  if (!(tau > 0) || !std::isfinite(tau))
    fail<DataError>(
        "flow.tau resolved to {} (must be a finite number > 0): are all sample losses 0? set "
        "flow.tau to a number",
        tau);
  return tau;
}

std::vector<double> flow_weights(const std::vector<double>& losses, double tau, const std::string& normalize,
                                 double* mean_out) {
  if (normalize != "mean" && normalize != "none")
    fail<ConfigError>("flow.normalize = \"{}\" is not one of: mean, none", normalize);
  std::vector<double> w(losses.size());
  double sum = 0;
  for (std::size_t i = 0; i < losses.size(); ++i) {
    w[i] = std::exp(-losses[i] / tau);
    sum += w[i];
  }
  const double mean = losses.empty() ? 0.0 : sum / static_cast<double>(losses.size());
  if (mean_out) *mean_out = mean;
  if (normalize == "mean") {
    if (!(mean > 0))
      fail<DataError>("flow: every weight underflowed to 0 (tau = {} is too small for these losses)", tau);
    for (auto& x : w) x /= mean;
  }
  return w;
}

double ScoreResult::tokens_per_s() const {
  return seconds > 0 ? static_cast<double>(input_tokens) / seconds : 0;
}

namespace {

std::string tau_spec_text(const config::TauSpec& t) {
  switch (t.kind) {
    case config::TauSpec::Kind::median:
      return "median";
    case config::TauSpec::Kind::value:
      return fmt::format("{}", t.value);
    case config::TauSpec::Kind::quantile:
      break;
  }
  return fmt::format("quantile {}", t.value);
}

void write_scores_attrs(h5::File& f, const ScoreResult& r, const config::FlowConfig& flow,
                        const fs::path& checkpoint, std::int64_t step, const fs::path& sample_set) {
  f.write_attr("kind", "scores");
  f.write_attr("format_version", std::int64_t{1});
  f.write_attr("n_samples", static_cast<std::int64_t>(r.loss.size()));
  f.write_attr("fingerprint", r.fingerprint);
  f.write_attr("sample_set", sample_set.string());
  f.write_attr("checkpoint", checkpoint.string());
  f.write_attr("checkpoint_step", step);
  f.write_attr("tau", r.tau);
  f.write_attr("tau_spec", tau_spec_text(flow.tau));
  f.write_attr("normalization", r.normalize);
  f.write_attr("raw_mean_weight", r.raw_mean_weight);
  f.write_attr("created_by", fmt::format("flowlm {} ({})", FLOWLM_VERSION, FLOWLM_GIT_DESCRIBE));
  for (const auto& [name, v] : {std::pair<const char*, const std::vector<double>*>{"loss", &r.loss},
                                std::pair<const char*, const std::vector<double>*>{"weight", &r.weight}}) {
    f.write_attr(fmt::format("{}_min", name), *std::min_element(v->begin(), v->end()));
    f.write_attr(fmt::format("{}_median", name), quantile(*v, 0.5));
    double s = 0;
    for (const double x : *v) s += x;
    f.write_attr(fmt::format("{}_mean", name), s / static_cast<double>(v->size()));
    f.write_attr(fmt::format("{}_max", name), *std::max_element(v->begin(), v->end()));
  }
}

}  // namespace

ScoreResult score_samples(const fs::path& checkpoint, const fs::path& sample_set,
                          const config::FlowConfig& flow, std::int64_t batch, const fs::path& output,
                          const comm::Communicator& world) {
  if (batch < 1) fail<ConfigError>("score.batch = {} must be at least 1", batch);
  const data::SampleSetInfo info = data::read_sample_set_info(sample_set);
  if (info.n_samples < 1) fail<DataError>("{}: the sample set is empty", sample_set.string());
  auto gpt = model::load_model(checkpoint);
  if (info.vocab_size > gpt->config().vocab_size)
    fail<DataError>("{}: vocab_size {} exceeds the vocab_size {} of {}", sample_set.string(), info.vocab_size,
                    gpt->config().vocab_size, checkpoint.string());
  const std::int64_t step = io::CheckpointReader(checkpoint).meta().step;

  // Whole groups per rank: the batch a sample is scored in never depends on the rank count.
  const std::int64_t n = info.n_samples, groups = (n + batch - 1) / batch;
  const auto [g0, gn] = data::rank_block(groups, world.rank(), world.size());
  const std::int64_t first = std::min(n, g0 * batch), last = std::min(n, (g0 + gn) * batch);
  const data::SampleSet set = data::read_sample_set(sample_set, first, last - first);
  if (set.max_input_length() > gpt->config().block_size)
    fail<DataError>("{}: a sample has {} input tokens, more than block_size {} of {}", sample_set.string(),
                    set.max_input_length(), gpt->config().block_size, checkpoint.string());

  std::vector<double> local_loss;
  std::vector<double> local_tokens;  // exact in double; gathered with the losses
  std::vector<float> local_token_loss;
  data::PaddedBatch pb;
  std::int64_t input_tokens = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (index_t s = 0; s < set.size(); s += batch) {
    const index_t B = std::min<index_t>(batch, set.size() - s);
    std::vector<index_t> ids(static_cast<std::size_t>(B));
    for (index_t b = 0; b < B; ++b) ids[static_cast<std::size_t>(b)] = s + b;
    data::pack_samples(set, ids, pb);
    gpt->forward(pb.inputs.data(), pb.targets.data(), pb.mask.data(), pb.B, pb.T, /*training=*/false);
    const float* tl = gpt->token_losses();
    for (index_t b = 0; b < B; ++b) {
      double sum = 0;
      for (index_t t = 0; t < pb.T; ++t) {
        const index_t k = b * pb.T + t;
        sum += tl[k];
        if (pb.mask[static_cast<std::size_t>(k)] != 0.0f) local_token_loss.push_back(tl[k]);
      }
      const index_t k = set.answer_tokens(s + b);
      local_loss.push_back(sum / static_cast<double>(k));
      local_tokens.push_back(static_cast<double>(k));
      input_tokens += set.input_length(s + b);
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  ScoreResult r;
  r.loss = world.allgatherv(local_loss);  // rank order = global sample order
  const std::vector<double> tokens = world.allgatherv(local_tokens);
  r.n_tokens.assign(tokens.begin(), tokens.end());
  r.token_loss = world.allgatherv(local_token_loss);
  for (const auto t : r.n_tokens) r.answer_tokens += t;
  for (std::size_t i = 0; i < r.loss.size(); ++i)
    if (!std::isfinite(r.loss[i]))
      fail<NumericError>("score: sample {} of {} has a non-finite loss {} under {}", i, sample_set.string(),
                         r.loss[i], checkpoint.string());
  r.tau = resolve_tau(flow.tau, r.loss);
  r.normalize = flow.normalize;
  r.weight = flow_weights(r.loss, r.tau, flow.normalize, &r.raw_mean_weight);
  r.fingerprint = info.fingerprint;
  r.seconds = world.max(secs);
  r.input_tokens = world.sum(input_tokens);
  log::info(
      "score: {} samples ({} answer tokens) in {:.2f}s, {:.0f} tok/s forward only; tau = {:.4f} ({}), "
      "raw mean weight {:.4f}",
      n, r.answer_tokens, r.seconds, r.tokens_per_s(), r.tau, tau_spec_text(flow.tau), r.raw_mean_weight);
  if (output.empty()) return r;

  // Write: parallel HDF5 (each rank its own rows) or rank 0 alone; every rank learns the outcome.
  const bool parallel = FLOWLM_HDF5_PARALLEL && world.size() > 1;
  const fs::path tmp = output.string() + ".tmp";
  std::string err;
  try {
    if (world.is_root() && output.has_parent_path()) fs::create_directories(output.parent_path());
  } catch (const std::exception& e) {
    err = e.what();
  }
  if (world.any(!err.empty())) fail<IoError>("{}: cannot create the directory: {}", output.string(), err);
  if (parallel || world.is_root()) {
    std::optional<h5::File> f;
    try {
      f.emplace(parallel ? h5::File::create_parallel(tmp, world) : h5::File::create(tmp));
      auto dl = f->create_dataset<double>("loss", {n});
      auto dw = f->create_dataset<double>("weight", {n});
      auto dt = f->create_dataset<std::int64_t>("n_tokens", {n});
      auto dtl = f->create_dataset<float>("token_loss", {static_cast<std::int64_t>(r.token_loss.size())});
      write_scores_attrs(*f, r, flow, checkpoint, step, sample_set);
      const std::int64_t w0 = parallel ? first : 0, wn = parallel ? last - first : n;
      if (wn > 0) {
        dl.write_rows(w0, wn, r.loss.data() + w0);
        dw.write_rows(w0, wn, r.weight.data() + w0);
        dt.write_rows(w0, wn, r.n_tokens.data() + w0);
      }
      // This rank's samples' answer tokens start after those of every earlier sample.
      std::int64_t tok0 = 0, tokn = 0;
      for (std::int64_t i = 0; i < w0 + wn; ++i)
        (i < w0 ? tok0 : tokn) += r.n_tokens[static_cast<std::size_t>(i)];
      if (tokn > 0) dtl.write_rows(tok0, tokn, r.token_loss.data() + tok0);
    } catch (const std::exception& e) {
      err = e.what();
    }
    try {
      if (f) f->close();
    } catch (const std::exception& e) {
      if (err.empty()) err = e.what();
    }
  }
  if (world.any(!err.empty())) {
    if (world.is_root()) fs::remove(tmp);
    fail<IoError>("{}: writing the scores failed: {}", output.string(),
                  err.empty() ? "on another rank" : err);
  }
  if (world.is_root()) fs::rename(tmp, output);
  world.barrier();
  log::info("score: wrote {} (loss min/median/max {:.4f}/{:.4f}/{:.4f})", output.string(),
            *std::min_element(r.loss.begin(), r.loss.end()), quantile(r.loss, 0.5),
            *std::max_element(r.loss.begin(), r.loss.end()));
  return r;
}

Scores read_scores(const fs::path& scores, const fs::path& sample_set) {
  const data::SampleSetInfo info = data::read_sample_set_info(sample_set);
  const h5::File f = h5::File::open(scores);
  if (!f.has_attr("kind") || f.read_attr_string("kind") != "scores")
    fail<DataError>(
        "{}: not a scores file (attribute 'kind' is not \"scores\"); write one with `flowlm score`",
        scores.string());
  Scores s;
  s.fingerprint = f.read_attr_string("fingerprint");
  s.normalization = f.read_attr_string("normalization");
  s.tau = f.read_attr_double("tau");
  const std::int64_t n = f.read_attr_int("n_samples");
  if (n != info.n_samples)
    fail<DataError>("{} scores {} samples but {} has {}: rescore this sample set with `flowlm score`",
                    scores.string(), n, sample_set.string(), info.n_samples);
  if (s.fingerprint != info.fingerprint)
    fail<DataError>(
        "{} was scored on another sample set (fingerprint {}) than {} (fingerprint {}): rescore it "
        "with `flowlm score`",
        scores.string(), s.fingerprint, sample_set.string(), info.fingerprint);
  s.loss = f.read_dataset<double>("loss");
  s.weight = f.read_dataset<double>("weight");
  if (static_cast<std::int64_t>(s.weight.size()) != n || static_cast<std::int64_t>(s.loss.size()) != n)
    fail<DataError>("{}: datasets loss/weight have {}/{} rows, expected n_samples = {}", scores.string(),
                    s.loss.size(), s.weight.size(), n);
  for (std::size_t i = 0; i < s.weight.size(); ++i)
    if (!(s.weight[i] >= 0) || !std::isfinite(s.weight[i]))
      fail<DataError>("{}: weight[{}] = {} is not a finite number >= 0", scores.string(), i, s.weight[i]);
  for (std::size_t i = 0; i < s.loss.size(); ++i)
    if (!std::isfinite(s.loss[i]) || s.loss[i] < 0)
      fail<DataError>("{}: loss[{}] = {} is not a finite number >= 0", scores.string(), i, s.loss[i]);
  s.n_tokens = f.read_dataset<std::int64_t>("n_tokens");
  if (static_cast<std::int64_t>(s.n_tokens.size()) != n)
    fail<DataError>("{}: dataset n_tokens has {} rows, expected n_samples = {}", scores.string(),
                    s.n_tokens.size(), n);
  for (std::size_t i = 0; i < s.n_tokens.size(); ++i)
    if (s.n_tokens[i] < 0)
      fail<DataError>("{}: n_tokens[{}] = {} is negative", scores.string(), i, s.n_tokens[i]);
  if (f.is_dataset("token_loss")) {
    s.token_loss = f.read_dataset<float>("token_loss");
    const auto rows = static_cast<std::int64_t>(s.token_loss.size());
    std::int64_t total = 0;
    for (const auto k : s.n_tokens) {
      if (k > rows - total)  // the sum no longer fits the dataset (and cannot overflow)
        fail<DataError>("{}: n_tokens sums to more than the {} rows of dataset token_loss", scores.string(),
                        rows);
      total += k;
    }
    if (rows != total)
      fail<DataError>("{}: dataset token_loss has {} rows, but n_tokens sums to {}", scores.string(), rows,
                      total);
    for (std::size_t i = 0; i < s.token_loss.size(); ++i)
      if (!std::isfinite(s.token_loss[i]) || s.token_loss[i] < 0)
        fail<DataError>("{}: token_loss[{}] = {} is not a finite number >= 0", scores.string(), i,
                        s.token_loss[i]);
  }
  return s;
}

void check_scores_match(const Scores& scores, const data::SampleSet& set, const std::string& scores_file,
                        const std::string& set_file) {
  if (set.first != 0 || static_cast<std::size_t>(set.size()) != scores.n_tokens.size())
    fail<DataError>("{} scores {} samples but {} holds {}: rescore this sample set with `flowlm score`",
                    scores_file, scores.n_tokens.size(), set_file, set.size());
  for (index_t i = 0; i < set.size(); ++i)
    if (scores.n_tokens[static_cast<std::size_t>(i)] != set.answer_tokens(i))
      fail<DataError>(
          "{}: sample {} has {} scored answer tokens but {} answer tokens in {}: the scores belong to "
          "another "
          "sample set; rescore it with `flowlm score`",
          scores_file, i, scores.n_tokens[static_cast<std::size_t>(i)], set.answer_tokens(i), set_file);
}

FlowWeights resolve_flow_weights(const Scores& scores, const config::FlowConfig& flow,
                                 const std::string& file) {
  FlowWeights w;
  const std::string& g = flow.granularity;
  if (g != "sample" && g != "token" && g != "both")
    fail<ConfigError>("flow.granularity = \"{}\" is not one of: sample, token, both", g);
  if (g == "sample" || g == "both") {
    w.tau_sample = resolve_tau(flow.tau, scores.loss);
    w.sample = flow_weights(scores.loss, w.tau_sample, flow.normalize);
  } else {
    w.sample.assign(scores.loss.size(), 1.0);
  }
  if (g == "token" || g == "both") {
    if (scores.token_loss.empty())
      fail<DataError>(
          "{}: has no per-token losses (written by an older flowlm), so flow.granularity = \"{}\" cannot be "
          "used; rescore the sample set with `flowlm score`",
          file, g);
    const std::vector<double> tl(scores.token_loss.begin(), scores.token_loss.end());
    w.tau_token = resolve_tau(flow.tau, tl);
    w.token = flow_weights(tl, w.tau_token, flow.normalize);
    w.token_start.resize(scores.n_tokens.size());
    std::int64_t at = 0;
    for (std::size_t i = 0; i < scores.n_tokens.size(); ++i) {
      w.token_start[i] = at;
      at += scores.n_tokens[i];
    }
  }
  return w;
}

}  // namespace flowlm::train
