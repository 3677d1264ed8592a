#include "train/trainer.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/signals.hpp"
#include "data/sampleset.hpp"
#include "data/shard.hpp"
#include "io/checkpoint.hpp"
#include "model/checkpoint.hpp"
#include "model/transformer.hpp"
#include "train/batch_source.hpp"
#include "train/evaluate.hpp"
#include "train/optimizer.hpp"
#include "train/schedule.hpp"
#include "train/train_checkpoint.hpp"
#include "train/train_log.hpp"
#include "train/weight_copies.hpp"

namespace flowlm::train {
namespace fs = std::filesystem;

namespace {

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

AdamWParams adamw_params(const config::JobConfig& job) {
  const auto& o = job.optim;
  return AdamWParams{static_cast<float>(o.beta1), static_cast<float>(o.beta2), static_cast<float>(o.eps),
                     static_cast<float>(o.weight_decay), o.decay_embeddings};
}

bool should_save(std::int64_t step, const config::CheckpointConfig& c, std::int64_t max_steps) {
  if (c.save_every > 0 && step % c.save_every == 0) return true;
  if (std::find(c.save_steps.begin(), c.save_steps.end(), step) != c.save_steps.end()) return true;
  return c.save_final && step == max_steps;
}

/// The job as this run executes it: the model of model.init_from, and finetune.epochs > 0 sets
/// train.max_steps from the sample count (both recorded in the checkpoints' config_toml).
config::JobConfig effective_job(const config::JobConfig& job) {
  config::JobConfig j = model::with_init_from_model(job);
  if (!j.finetune.train_set.empty() && j.finetune.epochs > 0) {
    const auto info = data::read_sample_set_info(j.finetune.train_set);
    const std::int64_t steps =
        (j.finetune.epochs * info.n_samples + j.train.global_batch - 1) / j.train.global_batch;
    j.train.max_steps = std::max<std::int64_t>(1, steps);
  }
  return j;
}

/// Relations between keys that only `train` needs; ConfigError naming the keys and values.
void validate(const config::JobConfig& job, const comm::Communicator& world) {
  const auto& t = job.train;
  const auto& ft = job.finetune;
  const bool finetuning = !ft.train_set.empty();
  const std::int64_t per_step = t.micro_batch * world.size();
  if (t.global_batch % per_step != 0)
    fail<ConfigError>(
        "train.global_batch = {} is not a multiple of train.micro_batch ({}) x ranks ({}); choose a global "
        "batch divisible by {} or change the rank count",
        t.global_batch, t.micro_batch, world.size(), per_step);
  if (job.data.train.empty() && !finetuning)
    fail<ConfigError>(
        "data.train is empty: list the token shards to train on, or set finetune.train_set to fine-tune on a "
        "sample set");
  if (ft.method == "flow" && !finetuning)
    fail<ConfigError>("finetune.method = \"flow\" needs finetune.train_set (the sample set to fine-tune on)");
  if (ft.method == "flow" && ft.scores.empty())
    fail<ConfigError>(
        "finetune.method = \"flow\" needs finetune.scores: run `flowlm score` on {} with the pre-trained "
        "checkpoint first",
        ft.train_set);
  if (ft.method == "l2_init" && ft.l2_lambda <= 0)
    log::warn("train: finetune.method = \"l2_init\" with finetune.l2_lambda = 0 is standard fine-tuning");
  if (ft.method == "l1_init" && ft.l1_lambda <= 0)
    log::warn("train: finetune.method = \"l1_init\" with finetune.l1_lambda = 0 is standard fine-tuning");
  if (job.data.vocab_size > job.model.vocab_size)
    fail<ConfigError>("data.vocab_size = {} exceeds model.vocab_size = {}", job.data.vocab_size,
                      job.model.vocab_size);
  if (job.optim.zero_stage == 1 && job.finetune.lora.r > 0)
    fail<ConfigError>(
        "optim.zero_stage = 1 with finetune.lora.r = {}: the adapters' optimizer state is small; set "
        "optim.zero_stage = 0",
        job.finetune.lora.r);
  if (job.optim.zero_stage == 1 && job.run.backend == "cuda")
    fail<ConfigError>(
        "optim.zero_stage = 1 is built for the host backends only so far; set optim.zero_stage = 0 with "
        "run.backend = \"cuda\"");
}

/// ZeRO-1 slices of the trainable buffer (ranks + 1 bounds), or the whole buffer on one slice.
std::vector<index_t> optimizer_slices(const config::JobConfig& job, const model::Transformer& model,
                                      const comm::Communicator& world) {
  if (job.optim.zero_stage == 1 && world.size() > 1)
    return zero_slices(model.trainable_table(), world.size());
  return {0, model.num_trainable()};
}

/// The loop: one optimizer step at a time over the batch source, with the weight copies,
/// validation, reports and checkpoints the job asks for.
class Trainer {
 public:
  /// `job` as effective_job() makes it.
  Trainer(const config::JobConfig& job, const comm::Communicator& world)
      : job_(job),
        world_(world),
        dir_(job.run.dir),
        model_(make_model(job)),
        slices_((validate(job_, world_), optimizer_slices(job_, model_, world_))),
        opt_(model_.trainable_table(), adamw_params(job), model_.backend(), my_slice_begin(), my_slice_end()),
        sched_(schedule_params(job_)) {
    source_ = make_batch_source(job_, world_);
    if (!job_.data.val.empty())
      val_ = std::make_unique<data::TokenDataset>(data::expand_paths(job_.data.val), job_.train.seq_len,
                                                  job_.model.vocab_size);
    if (world_.is_root()) fs::create_directories(dir_);
    world_.barrier();
    start();
  }

  TrainSummary run() {
    const auto& t = job_.train;
    summary_.first_step = state_.step;
    log::info(
        "train: {} params, {} layers, d={}, {} ranks x {} seq x {} tokens, {} micro-steps per step, {} "
        "steps{}",
        model_.num_params(), job_.model.n_layer, job_.model.n_embd, world_.size(), t.micro_batch, t.seq_len,
        source_->grad_accum_steps(), t.max_steps,
        finetuning() ? fmt::format(", fine-tuning ({}) on {}", job_.finetune.method, job_.finetune.train_set)
                     : std::string());
    report_memory();
    while (state_.step < t.max_steps) {
      StepStats s = train_step();
      summary_.losses.push_back(s.loss);
      log::progress(static_cast<double>(s.step - summary_.first_step) /
                    static_cast<double>(t.max_steps - summary_.first_step));
      if (val_ && t.val_every > 0 && (s.step % t.val_every == 0 || s.step == t.max_steps))
        s.val_loss = validate_loss();
      if (s.step % std::max<std::int64_t>(1, t.log_every) == 0 || s.step == t.max_steps || s.val_loss)
        log_->report(s);
      const bool saved = should_save(s.step, job_.checkpoint, t.max_steps);
      if (saved) save();
      // Ranks may see a signal at different times: agree on it once per step.
      if (world_.any(StopSignals::received() != 0) && s.step < t.max_steps) {
        if (!saved) save();
        fail<Interrupted>(
            "train: stopped by {} after step {}; checkpoint saved in {}; rerun with "
            "--set train.resume=true to continue",
            StopSignals::name(StopSignals::received()), s.step, dir_.string());
      }
    }
    summary_.last_step = state_.step;
    return summary_;
  }

 private:
  bool finetuning() const { return !job_.finetune.train_set.empty(); }
  /// ZeRO-1 on several ranks: each rank updates only its slice of the weights.
  bool sharded() const { return slices_.size() > 2; }
  /// Rank r's slice starts at bound(r) and ends at bound(r + 1) (sharded only).
  index_t bound(int r) const { return slices_[static_cast<std::size_t>(r)]; }
  index_t my_slice_begin() const { return sharded() ? bound(world_.rank()) : 0; }
  index_t my_slice_end() const { return sharded() ? bound(world_.rank() + 1) : slices_.back(); }

  static model::Transformer make_model(const config::JobConfig& job) {
    if (job.finetune.lora.r > 0 && job.model.init_from.empty())
      fail<ConfigError>(
          "finetune.lora.r = {} needs model.init_from: the adapters are trained on, and name, a base "
          "checkpoint",
          job.finetune.lora.r);
    model::Transformer m(job.model, job.run.backend);
    if (job.finetune.lora.r > 0) m.enable_lora(job.finetune.lora);
    return m;
  }

  /// What this rank holds for the run: weights, gradients, optimizer state, copies, activations.
  void report_memory() const {
    using log::human_bytes;
    const TrainMemory m = train_memory(model_, job_, world_.size());
    log::info(
        "train: memory per rank {}: weights {}, gradients {}, AdamW moments {}{}, weight copies {}, "
        "activations {}{} ({} of {} parameters train{})",
        human_bytes(m.total()), human_bytes(m.weights), human_bytes(m.grads), human_bytes(m.moments),
        sharded() ? fmt::format(" (ZeRO-1: the largest slice, {} of {} parameters)", m.moment_params,
                                model_.num_trainable())
                  : "",
        human_bytes(m.copies), human_bytes(m.activations),
        model_.lora() ? fmt::format(", LoRA scratch {}", human_bytes(m.lora)) : "", model_.num_trainable(),
        model_.num_params(),
        model_.lora() ? fmt::format(", LoRA r = {} on {}", model_.lora()->spec().r,
                                    fmt::join(model_.lora()->spec().targets, ", "))
                      : "");
  }

  /// Resume from the run dir, start from model.init_from, or initialize from the seed.
  void start() {
    // l2_init: theta0 = the weights fine-tuning starts from (model.init_from, else the seeded
    // init), also when resuming, so the penalty keeps pulling towards the same point.
    // LoRA: the base always comes from model.init_from, the adapters from the seed or the resumed
    // checkpoint.
    const std::string& method = job_.finetune.method;
    if (method == "l2_init" || method == "l1_init" || model_.lora()) initialize();
    if (method == "l2_init") l2_ = std::make_unique<L2ToInit>(model_, job_.finetune.l2_lambda);
    if (method == "l1_init") l1_ = std::make_unique<L1ToInit>(model_, job_.finetune.l1_lambda);
    std::optional<Resumed> resumed;
    if (job_.train.resume) resumed = resume_train_checkpoint(job_, model_, opt_, world_);
    if (resumed) {
      if (model_.lora() && resumed->state.lora_base_fingerprint != state_.lora_base_fingerprint)
        fail<ConfigError>(
            "{}: its adapters were trained on another base than model.init_from = {} holds now (weights "
            "fingerprint {} instead of {})",
            resumed->file.string(), job_.model.init_from, resumed->state.lora_base_fingerprint,
            state_.lora_base_fingerprint);
      state_ = resumed->state;
      source_->restore(state_.cursor);
      log::info("train: resuming from {} (step {}, {} tokens seen)", resumed->file.string(), state_.step,
                state_.tokens_seen);
    } else {
      if (!initialized_) initialize();
      if (job_.train.resume)
        log::info("train: resume = true but {} has no checkpoint; starting fresh", dir_.string());
    }
    if (job_.train.ema_decay > 0) start_ema(resumed.has_value());
    if (world_.is_root()) std::ofstream(dir_ / "config.toml") << config::to_toml(job_);
    log_.emplace(dir_, job_.train.max_steps,
                 resumed ? std::optional<std::int64_t>(state_.step) : std::nullopt, world_);
  }

  /// model.init_from, else the seeded random init; LoRA adapters from the seed (B = 0).
  void initialize() {
    if (!job_.model.init_from.empty()) {
      const io::CheckpointReader ckpt(job_.model.init_from);
      if (model_.lora() && model::is_lora_checkpoint(ckpt))
        fail<ConfigError>(
            "model.init_from = {} is a LoRA checkpoint; LoRA trains on a plain model: `flowlm merge` it "
            "first",
            job_.model.init_from);
      model::load_weights(model_, ckpt);
      log::info("train: initialized from {} (step {})", job_.model.init_from, ckpt.meta().step);
    } else {
      model_.init_random(static_cast<std::uint64_t>(job_.run.seed));
    }
    if (model::Lora* lora = model_.lora()) {
      lora->init_random(static_cast<std::uint64_t>(job_.run.seed));
      state_.lora_base_fingerprint = model::weights_fingerprint(model_);
    }
    initialized_ = true;
  }

  /// The EMA starts from the initial weights, or continues from the resumed step's EMA file.
  void start_ema(bool resumed) {
    ema_ = std::make_unique<WeightEma>(model_, job_.train.ema_decay);
    if (!resumed) return;
    const fs::path file = dir_ / ema_checkpoint_name(state_.step);
    if (!fs::exists(file)) {
      log::warn("train: {} not found; the EMA restarts from the resumed weights", file.string());
      return;
    }
    ema_->load(io::CheckpointReader(file), model_);
  }

  StepStats train_step() {
    const log::ActivityScope doing(fmt::format("train step {}/{}", state_.step + 1, job_.train.max_steps));
    kernels::Backend& be = model_.backend();
    const double lr = lr_at(state_.step, sched_);
    model_.zero_grad();
    double local_loss = 0;
    const double denom = source_->begin_step();
    for (std::int64_t m = 0; m < source_->grad_accum_steps(); ++m) {
      const MicroBatch mb = source_->micro_batch(m);
      model_.forward(mb.inputs, mb.targets, mb.mask, mb.B, mb.T);
      local_loss += weighted_loss(mb);
      model_.backward(mb.dlosses);
    }
    float* grads = model_.trainable_grads_view().f32();
    if (sharded()) {
      // ZeRO-1: each slice's gradient summed onto the rank that updates it; elsewhere stale.
      for (int r = 0; r < world_.size(); ++r) world_.reduce_sum(grads + bound(r), bound(r + 1) - bound(r), r);
    } else if (world_.size() > 1) {
      world_.allreduce_sum(grads, model_.num_trainable());
    }
    double loss = world_.sum(local_loss) / denom;
    if (l2_) loss += l2_->add_gradient(model_);
    if (l1_) loss += l1_->add_gradient(model_);
    const index_t mine = opt_.slice_end() - opt_.slice_begin();
    const kernels::TensorView my_grads{
        grads + opt_.slice_begin(), kernels::DType::f32, {mine}, kernels::Device::host};
    const double norm = sharded() ? std::sqrt(world_.sum(be.sum_squares(my_grads)))
                                  : std::sqrt(be.sum_squares(model_.trainable_grads_view()));
    if (!std::isfinite(loss) || !std::isfinite(norm))
      fail<NumericError>(
          "step {}: {} is {} (loss {}, grad norm {}); stopping. The last good checkpoint in {} is "
          "untouched: lower optim.lr or raise optim.warmup_steps and resume",
          state_.step + 1, std::isfinite(loss) ? "gradient norm" : "loss", std::isfinite(loss) ? norm : loss,
          loss, norm, dir_.string());
    opt_.step(model_.trainable_params_view(), model_.trainable_grads_view(), static_cast<float>(lr),
              clip_scale(norm, job_.optim.grad_clip));
    if (sharded()) {
      // Every rank's updated slice to all the others.
      float* params = model_.trainable_params_view().f32();
      for (int r = 0; r < world_.size(); ++r)
        world_.broadcast_bytes(params + bound(r),
                               static_cast<std::size_t>(bound(r + 1) - bound(r)) * sizeof(float), r);
    }
    if (ema_) ema_->update(model_);
    const std::int64_t step_tokens = source_->step_tokens();
    source_->advance_step();
    ++state_.step;
    state_.tokens_seen += step_tokens;
    state_.cursor = source_->cursor();
    log_->step_done(step_tokens);
    return StepStats{state_.step, loss, lr, norm, state_.tokens_seen, std::nullopt};
  }

  /// sum(weights * token losses) of the last forward, on the backend.
  double weighted_loss(const MicroBatch& mb) {
    kernels::Backend& be = model_.backend();
    const index_t n = mb.B * mb.T;
    if (!weights_ || weights_.view().numel() != n) weights_ = be.alloc(kernels::DType::f32, {n});
    be.copy_in(weights_.view(), mb.weights, static_cast<std::size_t>(n) * sizeof(float));
    return be.dot(model_.token_losses_view(), weights_.view());
  }

  /// Mean loss over the first val_batches x global_batch validation windows: the same windows
  /// whatever the rank count.
  double validate_loss() {
    const log::ActivityScope doing(fmt::format("validation after step {}", state_.step));
    const double v = evaluate_windows(model_, *val_, job_.train.val_batches * job_.train.global_batch,
                                      job_.train.micro_batch, world_)
                         .mean();
    summary_.final_val_loss = v;
    return v;
  }

  void save() {
    const log::ActivityScope doing(fmt::format("writing the checkpoint of step {}", state_.step));
    const fs::path path = save_train_checkpoint(job_, state_, model_, opt_, ema_.get(), world_);
    summary_.checkpoints.push_back(path);
    log::info("train: saved {}", path.string());
  }

  const config::JobConfig job_;
  comm::Communicator world_;
  fs::path dir_;
  model::Transformer model_;
  std::vector<index_t> slices_;  ///< ZeRO-1: ranks + 1 bounds; else {0, num_trainable}
  AdamW opt_;
  ScheduleParams sched_;
  std::unique_ptr<BatchSource> source_;
  std::unique_ptr<data::TokenDataset> val_;
  std::unique_ptr<L2ToInit> l2_;  ///< l2_init fine-tuning only
  std::unique_ptr<L1ToInit> l1_;  ///< l1_init fine-tuning only
  bool initialized_ = false;
  std::unique_ptr<WeightEma> ema_;  ///< train.ema_decay > 0 only
  std::optional<TrainLog> log_;
  kernels::Buffer weights_;  ///< the micro-batch's loss weights on the backend
  TrainState state_;
  TrainSummary summary_;
};

}  // namespace

TrainMemory train_memory(const model::Transformer& model, const config::JobConfig& job, int ranks) {
  const double f = sizeof(float);
  const auto trainable = static_cast<double>(model.num_trainable());
  TrainMemory m;
  m.moment_params = model.num_trainable();
  if (job.optim.zero_stage == 1 && ranks > 1) {
    const auto b = zero_slices(model.trainable_table(), ranks);
    m.moment_params = 0;
    for (int r = 0; r < ranks; ++r) m.moment_params = std::max(m.moment_params, b[r + 1] - b[r]);
  }
  m.weights = static_cast<double>(model.num_params()) * f;
  m.grads = trainable * f;
  m.moments = 2 * static_cast<double>(m.moment_params) * f;
  const std::string& method = job.finetune.method;
  m.copies = ((job.train.ema_decay > 0 ? 1 : 0) + (method == "l2_init" || method == "l1_init" ? 2 : 0)) *
             trainable * f;
  m.activations = static_cast<double>(model.activation_bytes(job.train.micro_batch, job.train.seq_len, true) +
                                      model.backward_scratch_bytes(job.train.micro_batch, job.train.seq_len));
  m.lora = model.lora() ? static_cast<double>(model.lora()->scratch_bytes()) : 0.0;
  return m;
}

TrainSummary run_training(const config::JobConfig& job, const comm::Communicator& world) {
  const config::JobConfig effective = effective_job(job);
  config::check_stage(effective, "train");
  const StopSignals signals;  // SIGUSR1/SIGTERM: finish the step, checkpoint, exit 3
  Trainer trainer(effective, world);
  return trainer.run();
}

}  // namespace flowlm::train
