#include "train/trainer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/signals.hpp"
#include "data/loader.hpp"
#include "data/sampleset.hpp"
#include "data/shard.hpp"
#include "flowlm/build_config.hpp"
#include "io/checkpoint.hpp"
#include "kernels/kernels.hpp"
#include "model/transformer.hpp"
#include "train/evaluate.hpp"
#include "train/flow.hpp"
#include "train/optimizer.hpp"
#include "train/schedule.hpp"

namespace flowlm::train {
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

ScheduleParams schedule_params(const config::JobConfig& job) {
  ScheduleParams p;
  p.kind = job.optim.schedule;
  p.lr = job.optim.lr;
  p.min_lr = job.optim.min_lr;
  p.warmup_steps = job.train.max_steps > 0 ? std::min(job.optim.warmup_steps, job.train.max_steps) : 0;
  p.max_steps = job.train.max_steps;
  p.decay_fraction = job.optim.decay_fraction;
  return p;
}

std::string optim_name(const char* moment, const std::string& param) {
  return std::string(moment) + "/" + param;
}

bool should_save(std::int64_t step, const config::CheckpointConfig& c, std::int64_t max_steps) {
  if (c.save_every > 0 && step % c.save_every == 0) return true;
  if (std::find(c.save_steps.begin(), c.save_steps.end(), step) != c.save_steps.end()) return true;
  return c.save_final && step == max_steps;
}

/// Keeps the rows of metrics.jsonl up to `step` (a resumed run replays the steps after it).
void truncate_metrics(const fs::path& file, std::int64_t step) {
  std::ifstream in(file);
  if (!in) return;
  std::vector<std::string> keep;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (row.is_discarded() || !row.contains("step") || row["step"].get<std::int64_t>() <= step)
      keep.push_back(line);
  }
  in.close();
  const fs::path tmp = file.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& l : keep) out << l << '\n';
  }
  fs::rename(tmp, file);
}

/// One micro-batch ready for forward/backward: per-token loss weights (null = all 1) and the
/// upstream gradients dlosses = weights / (the step's denominator).
struct MicroBatch {
  index_t B = 0, T = 0;
  const std::int32_t *inputs = nullptr, *targets = nullptr;
  const float *mask = nullptr, *weights = nullptr, *dlosses = nullptr;
};

/// Where a step's data comes from: fixed-length token windows (pretraining) or padded
/// prompt/answer samples (fine-tuning). Every rank calls the same members in the same order.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual index_t grad_accum_steps() const = 0;
  /// Prepares the current step; returns the loss denominator of the whole global batch.
  virtual double begin_step() = 0;
  virtual MicroBatch micro_batch(index_t m) = 0;
  /// Input tokens the whole step (all ranks) processes.
  virtual std::int64_t step_tokens() const = 0;
  virtual void advance_step() = 0;
  virtual data::LoaderCursor cursor() const = 0;
  virtual void restore(data::LoaderCursor c) = 0;
};

/// Pretraining: loss = mean over every token of the global batch.
class WindowSource final : public BatchSource {
 public:
  explicit WindowSource(const config::JobConfig& job, const comm::Communicator& world)
      : loader_(data::expand_paths(job.data.train), job.train.seq_len, job.model.vocab_size,
                job.train.global_batch, job.train.micro_batch, world.rank(), world.size(),
                static_cast<std::uint64_t>(job.run.seed),
                /*shuffle=*/true),
        B_(job.train.micro_batch),
        T_(job.train.seq_len),
        denom_(static_cast<double>(job.train.global_batch * job.train.seq_len)) {
    const auto n = static_cast<std::size_t>(B_ * T_);
    inputs_.resize(n);
    targets_.resize(n);
    dlosses_.assign(n, static_cast<float>(1.0 / denom_));
  }
  index_t grad_accum_steps() const override { return loader_.grad_accum_steps(); }
  double begin_step() override { return denom_; }
  MicroBatch micro_batch(index_t m) override {
    loader_.load_micro_batch(m, inputs_.data(), targets_.data());
    return MicroBatch{B_, T_, inputs_.data(), targets_.data(), nullptr, nullptr, dlosses_.data()};
  }
  std::int64_t step_tokens() const override { return loader_.tokens_per_step(); }
  void advance_step() override { loader_.advance_step(); }
  data::LoaderCursor cursor() const override { return loader_.cursor(); }
  void restore(data::LoaderCursor c) override { loader_.restore(c); }

 private:
  data::TokenLoader loader_;
  index_t B_, T_;
  double denom_;
  std::vector<std::int32_t> inputs_, targets_;
  std::vector<float> dlosses_;
};

/// Fine-tuning: loss = sum_i w_i * sum_t nll_it / (answer tokens in the global batch), with
/// w_i = 1 (standard, l2_init) or the FLOW weight of global sample i. Every rank holds the
/// whole set, so every rank computes the global denominator without communication.
class SampleSource final : public BatchSource {
 public:
  SampleSource(const config::JobConfig& job, const comm::Communicator& world, data::SampleSet set,
               std::vector<double> weights)
      : set_(std::move(set)),
        weights_(std::move(weights)),
        loader_(set_.size(), job.train.global_batch, job.train.micro_batch, world.rank(), world.size(),
                static_cast<std::uint64_t>(job.run.seed), /*shuffle=*/true) {}
  index_t grad_accum_steps() const override { return loader_.grad_accum_steps(); }
  double begin_step() override {
    std::int64_t answer = 0;
    step_tokens_ = 0;
    for (const index_t i : loader_.step_samples()) {
      answer += set_.answer_tokens(i);
      step_tokens_ += set_.input_length(i);
    }
    denom_ = static_cast<double>(answer);
    return denom_;
  }
  MicroBatch micro_batch(index_t m) override {
    const auto ids = loader_.micro_batch_samples(m);
    data::pack_samples(set_, ids, batch_);
    const auto n = static_cast<std::size_t>(batch_.B * batch_.T);
    weights_tok_.resize(n);
    dlosses_.resize(n);
    for (index_t b = 0; b < batch_.B; ++b) {
      const double w =
          weights_.empty() ? 1.0 : weights_[static_cast<std::size_t>(ids[static_cast<std::size_t>(b)])];
      for (index_t t = 0; t < batch_.T; ++t) {
        const auto k = static_cast<std::size_t>(b * batch_.T + t);
        weights_tok_[k] = static_cast<float>(w * batch_.mask[k]);
        dlosses_[k] = static_cast<float>(w * batch_.mask[k] / denom_);
      }
    }
    return MicroBatch{batch_.B,
                      batch_.T,
                      batch_.inputs.data(),
                      batch_.targets.data(),
                      batch_.mask.data(),
                      weights_tok_.data(),
                      dlosses_.data()};
  }
  std::int64_t step_tokens() const override { return step_tokens_; }
  void advance_step() override { loader_.advance_step(); }
  data::LoaderCursor cursor() const override { return loader_.cursor(); }
  void restore(data::LoaderCursor c) override { loader_.restore(c); }

 private:
  data::SampleSet set_;
  std::vector<double> weights_;  ///< per global sample; empty = all 1
  data::SampleLoader loader_;
  data::PaddedBatch batch_;
  std::vector<float> weights_tok_, dlosses_;
  double denom_ = 1;
  std::int64_t step_tokens_ = 0;
};

/// The job as this run executes it: finetune.epochs > 0 sets train.max_steps from the
/// sample count (recorded in the checkpoints' config_toml).
config::JobConfig effective_job(const config::JobConfig& job) {
  config::JobConfig j = job;
  if (!j.finetune.train_set.empty() && j.finetune.epochs > 0) {
    const auto info = data::read_sample_set_info(j.finetune.train_set);
    const std::int64_t steps =
        (j.finetune.epochs * info.n_samples + j.train.global_batch - 1) / j.train.global_batch;
    j.train.max_steps = std::max<std::int64_t>(1, steps);
  }
  return j;
}

class Trainer {
 public:
  Trainer(const config::JobConfig& job, const comm::Communicator& world)
      : job_(effective_job(job)),
        world_(world),
        dir_(job.run.dir),
        gpt_(job.model, job.run.backend),
        opt_(gpt_, AdamWParams{static_cast<float>(job.optim.beta1), static_cast<float>(job.optim.beta2),
                               static_cast<float>(job.optim.eps), static_cast<float>(job.optim.weight_decay),
                               job.optim.decay_embeddings}),
        sched_(schedule_params(job_)) {
    validate();
    make_source();
    if (!job_.data.val.empty())
      val_ = std::make_unique<data::TokenDataset>(data::expand_paths(job_.data.val), job_.train.seq_len,
                                                  job_.model.vocab_size);
    if (world_.is_root()) fs::create_directories(dir_);
    world_.barrier();
    start();
  }

  static std::string ema_name(std::int64_t step) { return "ema_" + io::checkpoint_name(step); }

  /// The EMA starts from the initial weights, or continues from the resumed step's EMA file.
  void start_ema(const std::optional<fs::path>& resumed_from) {
    if (job_.train.ema_decay <= 0) return;
    ema_.assign(gpt_.params(), gpt_.params() + gpt_.num_params());
    if (!resumed_from) return;
    const fs::path file = dir_ / ema_name(step_);
    if (!fs::exists(file)) {
      log::warn("train: {} not found; the EMA restarts from the resumed weights", file.string());
      return;
    }
    const io::CheckpointReader ckpt(file);
    for (const auto& p : gpt_.param_table()) ckpt.read("model", p.name, p.shape, ema_.data() + p.offset);
  }

  void update_ema() {
    if (ema_.empty()) return;
    const auto d = static_cast<float>(job_.train.ema_decay);
    const float* w = gpt_.params();
    for (std::size_t i = 0; i < ema_.size(); ++i) ema_[i] = d * ema_[i] + (1.0f - d) * w[i];
  }

  TrainSummary run() {
    const auto& t = job_.train;
    summary_.first_step = step_;
    log::info(
        "train: {} params, {} layers, d={}, {} ranks x {} seq x {} tokens, {} micro-steps per step, {} "
        "steps{}",
        gpt_.num_params(), job_.model.n_layer, job_.model.n_embd, world_.size(), t.micro_batch, t.seq_len,
        source_->grad_accum_steps(), t.max_steps,
        finetuning() ? fmt::format(", fine-tuning ({}) on {}", job_.finetune.method, job_.finetune.train_set)
                     : std::string());
    window_start_ = Clock::now();
    window_steps_ = 0;
    while (step_ < t.max_steps) {
      const double loss = train_step();
      ++step_;
      ++window_steps_;
      summary_.losses.push_back(loss);
      log::progress(static_cast<double>(step_ - summary_.first_step) /
                    static_cast<double>(t.max_steps - summary_.first_step));
      std::optional<double> val;
      if (val_ && t.val_every > 0 && (step_ % t.val_every == 0 || step_ == t.max_steps))
        val = validate_loss();
      if (step_ % std::max<std::int64_t>(1, t.log_every) == 0 || step_ == t.max_steps || val)
        report(loss, val);
      const bool saved = should_save(step_, job_.checkpoint, t.max_steps);
      if (saved) save();
      // Ranks may see a signal at different times: agree on it once per step.
      if (world_.any(StopSignals::received() != 0) && step_ < t.max_steps) {
        if (!saved) save();
        fail<Interrupted>(
            "train: stopped by {} after step {}; checkpoint saved in {}; rerun with "
            "--set train.resume=true to continue",
            StopSignals::name(StopSignals::received()), step_, dir_.string());
      }
    }
    summary_.last_step = step_;
    return summary_;
  }

 private:
  void validate() const {
    const auto& t = job_.train;
    const std::int64_t per_step = t.micro_batch * world_.size();
    if (t.global_batch % per_step != 0)
      fail<ConfigError>(
          "train.global_batch = {} is not a multiple of train.micro_batch ({}) x ranks ({}); choose a global "
          "batch "
          "divisible by {} or change the rank count",
          t.global_batch, t.micro_batch, world_.size(), per_step);
    if (job_.data.train.empty() && !finetuning())
      fail<ConfigError>(
          "data.train is empty: list the token shards to train on, or set finetune.train_set to fine-tune on "
          "a "
          "sample set");
    if (job_.finetune.method == "flow" && !finetuning())
      fail<ConfigError>(
          "finetune.method = \"flow\" needs finetune.train_set (the sample set to fine-tune on)");
    if (job_.finetune.method == "flow" && job_.finetune.scores.empty())
      fail<ConfigError>(
          "finetune.method = \"flow\" needs finetune.scores: run `flowlm score` on {} with the pre-trained "
          "checkpoint first",
          job_.finetune.train_set);
    if (job_.finetune.method == "l2_init" && job_.finetune.l2_lambda <= 0)
      log::warn("train: finetune.method = \"l2_init\" with finetune.l2_lambda = 0 is standard fine-tuning");
    if (job_.data.vocab_size > job_.model.vocab_size)
      fail<ConfigError>("data.vocab_size = {} exceeds model.vocab_size = {}", job_.data.vocab_size,
                        job_.model.vocab_size);
  }

  bool finetuning() const { return !job_.finetune.train_set.empty(); }

  void make_source() {
    if (!finetuning()) {
      source_ = std::make_unique<WindowSource>(job_, world_);
      return;
    }
    const auto& ft = job_.finetune;
    data::SampleSet set = data::read_sample_set(ft.train_set);
    if (set.vocab_size > job_.model.vocab_size)
      fail<ConfigError>("{}: vocab_size {} exceeds model.vocab_size = {}", ft.train_set, set.vocab_size,
                        job_.model.vocab_size);
    if (set.max_input_length() > job_.model.block_size)
      fail<DataError>("{}: the longest sample has {} input tokens, more than model.block_size = {}",
                      ft.train_set, set.max_input_length(), job_.model.block_size);
    std::vector<double> weights;
    if (ft.method == "flow") {
      const Scores scores = read_scores(ft.scores, ft.train_set);
      weights = scores.weight;
      log::info("train: FLOW weights from {} (tau {:.4f}, normalization {})", ft.scores, scores.tau,
                scores.normalization);
    } else if (!ft.scores.empty()) {
      log::warn("train: finetune.scores is ignored with finetune.method = \"{}\"", ft.method);
    }
    source_ = std::make_unique<SampleSource>(job_, world_, std::move(set), std::move(weights));
  }

  /// l2_init: theta0 = the weights fine-tuning starts from (model.init_from, else the seeded
  /// init), also when resuming, so the penalty keeps pulling towards the same point.
  void keep_theta0() {
    if (job_.finetune.method != "l2_init") return;
    if (!job_.model.init_from.empty())
      model::load_weights(gpt_, io::CheckpointReader(job_.model.init_from));
    else
      gpt_.init_random(static_cast<std::uint64_t>(job_.run.seed));
    theta0_.assign(gpt_.params(), gpt_.params() + gpt_.num_params());
  }

  /// Resume from the run dir, start from model.init_from, or initialize from the seed.
  void start() {
    keep_theta0();
    std::optional<fs::path> resume_from;
    if (job_.train.resume) resume_from = io::newest_valid_checkpoint(dir_);
    if (resume_from) {
      const io::CheckpointReader ckpt(*resume_from);
      const auto& meta = ckpt.meta();
      if (meta.world_size != world_.size())
        fail<ConfigError>(
            "{}: written by {} ranks, but this run has {}; resume with the same rank count (e.g. mpirun -n "
            "{}) so "
            "the trajectory continues exactly, or start a new run.dir",
            resume_from->string(), meta.world_size, world_.size(), meta.world_size);
      model::load_weights(gpt_, ckpt);
      for (const auto& p : gpt_.param_table()) {
        ckpt.read("optim", optim_name("m", p.name), p.shape, opt_.m() + p.offset);
        ckpt.read("optim", optim_name("v", p.name), p.shape, opt_.v() + p.offset);
      }
      step_ = meta.step;
      tokens_seen_ = meta.tokens_seen;
      opt_.set_step_count(step_);
      if (meta.data_cursor.size() != 1)
        fail<IoError>("{}: attribute 'data_cursor' has {} entries, expected 1", resume_from->string(),
                      meta.data_cursor.size());
      source_->restore(data::LoaderCursor{meta.data_cursor[0]});
      if (world_.is_root()) truncate_metrics(dir_ / "metrics.jsonl", step_);
      log::info("train: resuming from {} (step {}, {} tokens seen)", resume_from->string(), step_,
                tokens_seen_);
    } else if (!job_.model.init_from.empty()) {
      const io::CheckpointReader ckpt(job_.model.init_from);
      model::load_weights(gpt_, ckpt);
      log::info("train: initialized from {} (step {})", job_.model.init_from, ckpt.meta().step);
    } else {
      gpt_.init_random(static_cast<std::uint64_t>(job_.run.seed));
      if (job_.train.resume)
        log::info("train: resume = true but {} has no checkpoint; starting fresh", dir_.string());
    }
    start_ema(resume_from);
    if (world_.is_root()) {
      std::ofstream(dir_ / "config.toml") << config::to_toml(job_);
      if (!resume_from) std::ofstream(dir_ / "metrics.jsonl", std::ios::trunc);
    }
  }

  double train_step() {
    const double lr = lr_at(step_, sched_);
    gpt_.zero_grad();
    double local_loss = 0;
    const double denom = source_->begin_step();
    for (std::int64_t m = 0; m < source_->grad_accum_steps(); ++m) {
      const MicroBatch mb = source_->micro_batch(m);
      gpt_.forward(mb.inputs, mb.targets, mb.mask, mb.B, mb.T);
      const float* losses = gpt_.token_losses();
      const index_t n = mb.B * mb.T;
      if (mb.weights)
        for (index_t i = 0; i < n; ++i) local_loss += static_cast<double>(mb.weights[i]) * losses[i];
      else
        for (index_t i = 0; i < n; ++i) local_loss += losses[i];
      gpt_.backward(mb.dlosses);
    }
    if (world_.size() > 1) world_.allreduce_sum(gpt_.grads(), gpt_.num_params());
    double loss = world_.sum(local_loss) / denom;
    if (!theta0_.empty()) loss += add_l2_init_grad();
    const double norm = std::sqrt(kernels::sum_squares(gpt_.grads(), gpt_.num_params()));
    if (!std::isfinite(loss) || !std::isfinite(norm))
      fail<NumericError>(
          "step {}: {} is {} (loss {}, grad norm {}); stopping. The last good checkpoint in {} is "
          "untouched: lower optim.lr or raise optim.warmup_steps and resume",
          step_ + 1, std::isfinite(loss) ? "gradient norm" : "loss", std::isfinite(loss) ? norm : loss, loss,
          norm, dir_.string());
    last_norm_ = norm;
    last_lr_ = lr;
    opt_.step(gpt_.params(), gpt_.grads(), static_cast<float>(lr), clip_scale(norm, job_.optim.grad_clip));
    update_ema();
    const std::int64_t step_tokens = source_->step_tokens();
    source_->advance_step();
    tokens_seen_ += step_tokens;
    window_tokens_ += step_tokens;
    return loss;
  }

  /// l2_init: adds 2 lambda (theta - theta0) / P to the (all-reduced, identical) gradients;
  /// returns the penalty lambda sum((theta - theta0)^2) / P.
  double add_l2_init_grad() {
    const double lambda = job_.finetune.l2_lambda, P = static_cast<double>(gpt_.num_params());
    const float* w = gpt_.params();
    float* g = gpt_.grads();
    const auto scale = static_cast<float>(2.0 * lambda / P);
    double sq = 0;
    for (std::size_t i = 0; i < theta0_.size(); ++i) {
      const float d = w[i] - theta0_[i];
      sq += static_cast<double>(d) * d;
      g[i] += scale * d;
    }
    return lambda * sq / P;
  }

  /// Mean loss over the first val_batches x global_batch validation windows: the same windows
  /// whatever the rank count.
  double validate_loss() {
    const double v = evaluate_windows(gpt_, *val_, job_.train.val_batches * job_.train.global_batch,
                                      job_.train.micro_batch, world_)
                         .mean();
    summary_.final_val_loss = v;
    return v;
  }

  void report(double loss, std::optional<double> val) {
    const double secs = std::chrono::duration<double>(Clock::now() - window_start_).count();
    const double step_time = window_steps_ > 0 ? secs / static_cast<double>(window_steps_) : 0;
    const double tok_s = secs > 0 ? static_cast<double>(window_tokens_) / secs : 0;
    const double eta = step_time * static_cast<double>(job_.train.max_steps - step_);
    std::string line =
        fmt::format("step {:>6}/{} | loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} tok/s | ETA {}", step_,
                    job_.train.max_steps, loss, last_lr_, last_norm_, tok_s, log::format_duration(eta));
    if (val) line += fmt::format(" | val {:.4f}", *val);
    log::info("{}", line);
    if (world_.is_root()) {
      nlohmann::json row = {{"step", step_},
                            {"loss", loss},
                            {"lr", last_lr_},
                            {"grad_norm", last_norm_},
                            {"tokens_seen", tokens_seen_},
                            {"tokens_per_s", tok_s}};
      if (val) row["val_loss"] = *val;
      std::ofstream(dir_ / "metrics.jsonl", std::ios::app) << row.dump() << '\n';
    }
    window_start_ = Clock::now();
    window_steps_ = 0;
    window_tokens_ = 0;
  }

  void save() {
    io::CheckpointMeta meta;
    meta.step = step_;
    meta.tokens_seen = tokens_seen_;
    meta.world_size = world_.size();
    meta.config_toml = config::to_toml(job_);
    meta.rng_state = fmt::format("seed={}", job_.run.seed);  // no random state beyond the seeded data order
    meta.data_cursor = {source_->cursor().position};
    meta.model_attrs = model::model_attrs(gpt_.config());
    meta.extra["kind"] = "train";
    if (finetuning()) {
      meta.extra["finetune_method"] = job_.finetune.method;
      meta.extra["finetune_set"] = job_.finetune.train_set;
    }
    std::vector<io::TensorRef> model, optim;
    for (const auto& p : gpt_.param_table()) {
      model.push_back({p.name, p.shape, gpt_.params() + p.offset, 0});
      optim.push_back({optim_name("m", p.name), p.shape, opt_.m() + p.offset, 0});
      optim.push_back({optim_name("v", p.name), p.shape, opt_.v() + p.offset, 0});
    }
    const fs::path path = dir_ / io::checkpoint_name(step_);
    io::write_checkpoint(path, meta, model, optim, world_);
    if (!ema_.empty()) {
      io::CheckpointMeta ema_meta = meta;
      ema_meta.extra["kind"] = "ema";
      ema_meta.extra["ema_decay"] = fmt::format("{}", job_.train.ema_decay);
      std::vector<io::TensorRef> ema;
      for (const auto& p : gpt_.param_table()) ema.push_back({p.name, p.shape, ema_.data() + p.offset, 0});
      io::write_checkpoint(dir_ / ema_name(step_), ema_meta, ema, {}, world_);
    }
    summary_.checkpoints.push_back(path);
    if (world_.is_root() && job_.checkpoint.keep_last > 0)
      io::prune_checkpoints(dir_, job_.checkpoint.keep_last);
    log::info("train: saved {}", path.string());
  }

  const config::JobConfig job_;
  comm::Communicator world_;
  fs::path dir_;
  model::Transformer gpt_;
  AdamW opt_;
  ScheduleParams sched_;
  std::unique_ptr<BatchSource> source_;
  std::unique_ptr<data::TokenDataset> val_;
  std::vector<float> theta0_;  ///< l2_init: the starting weights
  std::vector<float> ema_;     ///< online EMA of the weights (empty when train.ema_decay = 0)
  std::int64_t step_ = 0, tokens_seen_ = 0, window_steps_ = 0, window_tokens_ = 0;
  double last_norm_ = 0, last_lr_ = 0;
  Clock::time_point window_start_;
  TrainSummary summary_;
};

}  // namespace

TrainSummary run_training(const config::JobConfig& job, const comm::Communicator& world) {
  config::check_stage(job, "train");
  const StopSignals signals;  // SIGUSR1/SIGTERM: finish the step, checkpoint, exit 3
  Trainer trainer(job, world);
  return trainer.run();
}

}  // namespace flowlm::train
