#include "train/average.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <set>

#include "core/error.hpp"
#include "core/log.hpp"
#include "io/checkpoint.hpp"
#include "io/hdf5.hpp"
#include "model/checkpoint.hpp"
#include "train/evaluate.hpp"

namespace flowlm::train {
namespace fs = std::filesystem;
namespace h5 = io::h5;

namespace {

std::string steps_text(const std::vector<AverageSource>& s) {
  std::vector<std::int64_t> steps;
  for (const auto& x : s) steps.push_back(x.step);
  return nlohmann::json(steps).dump();
}

/// "0.9" / "0.25": the shortest text that reads back as the same double.
std::string num_text(double v) { return fmt::format("{}", v); }

AverageOutput make_output(const fs::path& path, std::vector<AverageSource> sources,
                          std::vector<double> weights, const std::string& mode) {
  AverageOutput o;
  o.path = path;
  o.step = sources.back().step;
  o.sources = std::move(sources);
  o.weights = std::move(weights);
  o.attrs["mode"] = mode;
  return o;
}

/// LAWA windows: the window ending at saved step s holds the k checkpoints s - j * every
/// (every > 0) or the k saved ones up to s (every = 0), oldest first.
std::vector<std::vector<AverageSource>> lawa_windows(const config::AverageConfig& cfg,
                                                     const std::vector<AverageSource>& src) {
  std::vector<std::vector<AverageSource>> windows;
  const auto k = static_cast<std::size_t>(cfg.k);
  std::int64_t last_end = -1;
  for (std::size_t i = 0; i < src.size(); ++i) {
    std::vector<AverageSource> w;
    if (cfg.every == 0) {
      if (i + 1 < k) continue;
      w.assign(src.begin() + static_cast<std::ptrdiff_t>(i + 1 - k),
               src.begin() + static_cast<std::ptrdiff_t>(i + 1));
    } else {
      for (std::size_t j = k; j-- > 0;) {
        const std::int64_t want = src[i].step - static_cast<std::int64_t>(j) * cfg.every;
        const auto it =
            std::find_if(src.begin(), src.end(), [&](const AverageSource& s) { return s.step == want; });
        if (it == src.end()) break;
        w.push_back(*it);
      }
      if (w.size() != k) continue;
    }
    // Grouped (the reference): windows never share a checkpoint.
    if (cfg.grouped && w.front().step <= last_end) continue;
    last_end = w.back().step;
    windows.push_back(std::move(w));
  }
  return windows;
}

std::vector<AverageSource> step_range(const config::AverageConfig& cfg,
                                      const std::vector<AverageSource>& src) {
  std::vector<AverageSource> out;
  for (const auto& s : src)
    if (s.step >= cfg.start_step && (cfg.end_step < 0 || s.step <= cfg.end_step)) out.push_back(s);
  if (out.empty())
    fail<ConfigError>(
        "average: no checkpoint in average.start_step = {} .. average.end_step = {} (the inputs have steps "
        "{})",
        cfg.start_step, cfg.end_step, steps_text(src));
  return out;
}

}  // namespace

std::vector<AverageSource> resolve_average_inputs(const std::vector<std::string>& inputs, bool keep_order) {
  config::require_nonempty(inputs, "average.inputs", "average");
  std::vector<AverageSource> out;
  for (const auto& path : expand_checkpoints(inputs, "average.inputs"))
    out.push_back({path, io::CheckpointReader(path).meta().step});
  if (keep_order) return out;
  std::stable_sort(out.begin(), out.end(),
                   [](const AverageSource& a, const AverageSource& b) { return a.step < b.step; });
  for (std::size_t i = 1; i < out.size(); ++i)
    if (out[i].step == out[i - 1].step)
      fail<ConfigError>(
          "average.inputs: {} and {} are both at step {}; list checkpoints of one run (the modes order "
          "them by step)",
          out[i - 1].path.string(), out[i].path.string(), out[i].step);
  return out;
}

std::vector<AverageOutput> plan_average(const config::AverageConfig& cfg,
                                        const std::vector<AverageSource>& src, const fs::path& dir) {
  std::vector<AverageOutput> outs;
  if (src.empty()) fail<ConfigError>("average.inputs: no checkpoints to average");
  if (cfg.mode == "lawa") {
    const auto windows = lawa_windows(cfg, src);
    if (windows.empty())
      fail<ConfigError>(
          "average: lawa needs average.k = {} checkpoints spaced average.every = {} steps apart, but the {} "
          "inputs (steps {}) hold no such window; lower k or change every",
          cfg.k, cfg.every, src.size(), steps_text(src));
    for (const auto& w : windows) {
      auto o = make_output(dir / fmt::format("lawa_k{}_step_{:08d}.h5", cfg.k, w.back().step), w,
                           std::vector<double>(w.size(), 1.0 / static_cast<double>(w.size())), "lawa");
      o.attrs["k"] = std::to_string(cfg.k);
      o.attrs["every"] = std::to_string(cfg.every);
      o.attrs["grouped"] = cfg.grouped ? "true" : "false";
      outs.push_back(std::move(o));
    }
  } else if (cfg.mode == "swa") {
    const auto sel = step_range(cfg, src);
    outs.push_back(make_output(dir / fmt::format("swa_step_{:08d}.h5", sel.back().step), sel,
                               std::vector<double>(sel.size(), 1.0 / static_cast<double>(sel.size())),
                               "swa"));
  } else if (cfg.mode == "ema") {
    const auto sel = step_range(cfg, src);
    // Unrolled e_i = d e_{i-1} + (1 - d) w_i with e_0 = w_0: w_0 keeps d^(n-1), w_i gets (1-d) d^(n-1-i).
    const std::size_t n = sel.size();
    std::vector<double> w(n);
    for (std::size_t i = 0; i < n; ++i)
      w[i] = (i == 0 ? 1.0 : 1.0 - cfg.decay) * std::pow(cfg.decay, static_cast<double>(n - 1 - i));
    auto o = make_output(dir / fmt::format("ema_d{}_step_{:08d}.h5", num_text(cfg.decay), sel.back().step),
                         sel, w, "ema");
    o.attrs["decay"] = num_text(cfg.decay);
    outs.push_back(std::move(o));
  } else if (cfg.mode == "interpolate") {
    if (src.size() != 2)
      fail<ConfigError>(
          "average: interpolate needs exactly two checkpoints in average.inputs (A, B: alpha * A + (1 - "
          "alpha) "
          "* B), got {}",
          src.size());
    if (cfg.alphas.empty()) fail<ConfigError>("average.alphas is empty: list at least one alpha in [0, 1]");
    for (const double a : cfg.alphas) {
      auto o =
          make_output(dir / fmt::format("interp_alpha_{}.h5", num_text(a)), src, {a, 1.0 - a}, "interpolate");
      o.step = src[1].step;
      o.attrs["alpha"] = num_text(a);
      outs.push_back(std::move(o));
    }
  } else {
    fail<ConfigError>("average.mode = '{}' is unknown; use lawa, swa, ema or interpolate", cfg.mode);
  }
  if (cfg.mode == "swa" || cfg.mode == "ema") {
    outs.back().attrs["start_step"] = std::to_string(cfg.start_step);
    outs.back().attrs["end_step"] = std::to_string(cfg.end_step);
  }
  return outs;
}

std::vector<std::pair<std::string, Shape>> check_same_architecture(
    const std::vector<AverageSource>& sources) {
  if (sources.empty()) fail<ConfigError>("average: no checkpoints to compare");
  for (const auto& s : sources)
    if (model::is_lora_checkpoint(io::CheckpointReader(s.path)))
      fail<ConfigError>(
          "average: {} holds LoRA adapters; the mean of the A and B factors is not the mean of the updates B "
          "A, "
          "so `flowlm merge` each checkpoint and average the merged ones",
          s.path.string());
  const auto ref = io::CheckpointReader(sources[0].path).tensors("model");
  if (ref.empty()) fail<ConfigError>("average: {} has no /model tensors", sources[0].path.string());
  for (std::size_t j = 1; j < sources.size(); ++j) {
    const auto cur = io::CheckpointReader(sources[j].path).tensors("model");
    const std::string a = sources[0].path.string(), b = sources[j].path.string();
    for (std::size_t i = 0; i < std::max(ref.size(), cur.size()); ++i) {
      if (i >= ref.size() || i >= cur.size())
        fail<ConfigError>(
            "average: {} has {} model tensors but {} has {} (first unmatched: '{}'); average checkpoints of "
            "one "
            "architecture",
            a, ref.size(), b, cur.size(), i < ref.size() ? ref[i].first : cur[i].first);
      if (ref[i].first != cur[i].first)
        fail<ConfigError>(
            "average: tensor {} is '{}' in {} but '{}' in {}; average checkpoints of one architecture", i,
            ref[i].first, a, cur[i].first, b);
      if (ref[i].second != cur[i].second)
        fail<ConfigError>(
            "average: tensor '{}' has shape {} in {} but {} in {}; average checkpoints of one architecture",
            ref[i].first, shape_str(ref[i].second), a, shape_str(cur[i].second), b);
    }
  }
  return ref;
}

std::vector<int> balance_owners(const std::vector<std::pair<std::string, Shape>>& tensors, int ranks) {
  std::vector<std::size_t> order(tensors.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
    return shape_numel(tensors[x].second) > shape_numel(tensors[y].second);
  });
  std::vector<index_t> load(static_cast<std::size_t>(std::max(1, ranks)), 0);
  std::vector<int> owner(tensors.size(), 0);
  for (const auto i : order) {
    const auto r = static_cast<std::size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = static_cast<int>(r);
    load[r] += shape_numel(tensors[i].second);
  }
  return owner;
}

void write_average(const AverageOutput& out, const comm::Communicator& world) {
  if (out.sources.empty() || out.sources.size() != out.weights.size())
    fail<ConfigError>("average: {} has {} sources and {} weights", out.path.string(), out.sources.size(),
                      out.weights.size());
  const auto tensors = check_same_architecture(out.sources);
  const auto owners = balance_owners(tensors, world.size());
  std::vector<std::unique_ptr<io::CheckpointReader>> readers;
  for (const auto& s : out.sources) readers.push_back(std::make_unique<io::CheckpointReader>(s.path));

  const io::CheckpointMeta& last = readers.back()->meta();
  io::CheckpointMeta meta;
  meta.step = out.step;
  meta.tokens_seen = last.tokens_seen;
  meta.world_size = last.world_size;
  meta.config_toml = last.config_toml;
  meta.rng_state = "none (averaged weights)";
  meta.data_cursor = last.data_cursor.empty() ? std::vector<std::int64_t>{0} : last.data_cursor;
  meta.model_attrs = last.model_attrs;  // the sources share one architecture (checked above)
  meta.extra = out.attrs;
  meta.extra["kind"] = "average";
  std::vector<std::string> paths;
  std::vector<std::int64_t> steps;
  for (const auto& s : out.sources) {
    paths.push_back(s.path.string());
    steps.push_back(s.step);
  }
  meta.extra["sources"] = nlohmann::json(paths).dump();
  meta.extra["source_steps"] = nlohmann::json(steps).dump();
  meta.extra["weights"] = nlohmann::json(out.weights).dump();

  std::vector<io::TensorRef> refs;
  for (std::size_t i = 0; i < tensors.size(); ++i)
    refs.push_back({tensors[i].first, tensors[i].second, nullptr, owners[i]});
  // Only the owner of tensor i runs this, for chunks of whole rows of about kChunk elements
  // (the writer writes each before asking for the next): the chunk is read from every source and
  // summed in float64, sources in order (so the result does not depend on the chunking or the
  // rank count), in blocks small enough for L1. A rank holds one chunk buffer per source and the
  // writer's chunk.
  constexpr index_t kChunk = index_t{1} << 18;
  constexpr std::size_t kBlock = 512;
  std::vector<std::vector<float>> parts(readers.size());
  std::vector<h5::Dataset> sets;
  std::size_t open_index = tensors.size();
  double read_s = 0, read_bytes = 0, sum_s = 0;
  const io::RowProducer produce = [&](std::size_t i, index_t first, index_t count, float* dst) {
    const auto p0 = std::chrono::steady_clock::now();
    const auto& [name, shape] = tensors[i];
    if (open_index != i) {
      sets.clear();
      for (std::size_t j = 0; j < readers.size(); ++j) {
        sets.push_back(readers[j]->file().open_dataset("/model/" + name));
        if (sets.back().shape() != shape)
          fail<ConfigError>("average: tensor '{}' has shape {} in {} but {} in {}", name,
                            shape_str(sets.back().shape()), out.sources[j].path.string(), shape_str(shape),
                            out.sources[0].path.string());
      }
      open_index = i;
    }
    const auto n = static_cast<std::size_t>(shape.empty() ? 1 : count * (shape_numel(shape) / shape[0]));
    for (std::size_t j = 0; j < sets.size(); ++j) {
      parts[j].resize(n);
      if (shape.empty())
        sets[j].read(parts[j].data());
      else
        sets[j].read_rows(first, count, parts[j].data());
    }
    const auto t1 = std::chrono::steady_clock::now();
    read_s += std::chrono::duration<double>(t1 - p0).count();
    read_bytes += 4.0 * static_cast<double>(n) * static_cast<double>(sets.size());
    double acc[kBlock];
    for (std::size_t b = 0; b < n; b += kBlock) {
      const std::size_t m = std::min(kBlock, n - b);
      std::fill(acc, acc + m, 0.0);
      for (std::size_t j = 0; j < sets.size(); ++j) {
        const double w = out.weights[j];
        const float* src = parts[j].data() + b;
        for (std::size_t e = 0; e < m; ++e) acc[e] += w * static_cast<double>(src[e]);
      }
      for (std::size_t e = 0; e < m; ++e) dst[b + e] = static_cast<float>(acc[e]);
    }
    sum_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  };
  const auto t0 = std::chrono::steady_clock::now();
  io::write_checkpoint_streamed(out.path, meta, refs, produce, kChunk, world);
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double all_bytes = world.sum(read_bytes), slowest_read = world.max(read_s);
  const double slowest_sum = world.max(sum_s);
  log::info(
      "average: {}: read {:.1f} MB in {:.3f} s (slowest rank's reads; {:.1f} MB/s), sums {:.3f} s, {:.3f} s "
      "in "
      "all ({:.1f} MB/s)",
      out.path.filename().string(), all_bytes / 1e6, slowest_read,
      all_bytes / std::max(slowest_read, 1e-9) / 1e6, slowest_sum, total_s,
      all_bytes / std::max(total_s, 1e-9) / 1e6);
}

std::vector<fs::path> run_average(const config::JobConfig& job, const comm::Communicator& world) {
  const auto& cfg = job.average;
  const std::vector<std::string> inputs =
      cfg.inputs.empty() ? std::vector<std::string>{job.run.dir} : cfg.inputs;
  const fs::path dir = cfg.output_dir.empty() ? fs::path(job.run.dir) / "averaged" : fs::path(cfg.output_dir);
  const auto sources = resolve_average_inputs(inputs, cfg.mode == "interpolate");
  // Fail before writing anything when any two inputs differ in architecture.
  check_same_architecture(sources);
  const auto plan = plan_average(cfg, sources, dir);
  log::info("average: {} over {} checkpoints (steps {}) -> {} output(s) in {}", cfg.mode, sources.size(),
            steps_text(sources), plan.size(), dir.string());
  std::vector<fs::path> written;
  for (const auto& o : plan) {
    write_average(o, world);
    log::info("average: wrote {} (steps {})", o.path.string(), steps_text(o.sources));
    written.push_back(o.path);
  }
  return written;
}

}  // namespace flowlm::train
