// Training throughput of flowlm's host backend: the same step as the PyTorch peer
// (bench_train_torch.py): forward, backward, gradient all-reduce (under mpirun), global-norm
// clipping and AdamW, on a fixed random batch. Prints one JSON line (rank 0).
//
//   bench_train [--arch gpt2|llama] [--n-layer 6 --n-head 6 --n-embd 384 --vocab 256 --seq 256
//               --batch 8] [--n-kv-head K] [--n-ff F] [--steps 10 --warmup 2] [--lora-r R]
//   mpirun -n 2 bench_train ...        (the global batch is split over the ranks)
//
// --arch gpt2 (default) is gpt2_config's GPT-2; --arch llama is the llama family with its
// defaults (RMSNorm eps 1e-5, rotate-half RoPE theta 1e4, SwiGLU, no biases, untied head).
// --n-kv-head 0 (default): n_head for gpt2; for llama n_head / 3 rounded, then lowered to a
// divisor of n_head (6 heads -> 2 kv heads). --n-ff 0 (default): the family default of
// resolve_model, 4 n_embd for gpt2 and, for llama, Meta's 8/3 n_embd rounded up to a multiple of
// 256. At n_embd 384 that is 1024, which is also 8/3 C exactly and gives the same MLP parameter
// count as GPT-2's 4C MLP (3 x 384 x 1024 = 2 x 384 x 1536).
// --lora-r R > 0: LoRA adapters (alpha = R) on every projection train instead of the model, as
// finetune.lora does (tests/bench/run_lora_memory.sh compares the peak RSS of both).
// JSON keys: impl, arch, ranks, threads, vocab, n_kv_head, n_ff, params, trainable, lora_r,
// tokens_per_s (global, median step), step_ms, peak_rss_mb (max over ranks), final_loss.
#include <sys/resource.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/model_config.hpp"
#include "core/error.hpp"
#include "kernels/backend.hpp"
#include "kernels/kernels.hpp"
#include "model/transformer.hpp"
#include "train/optimizer.hpp"

namespace {

/// n_head / 3 rounded to the nearest integer, then down to a divisor of n_head (GQA needs one).
std::int64_t default_llama_kv_heads(std::int64_t n_head) {
  std::int64_t k = std::max<std::int64_t>(1, (n_head + 1) / 3);
  while (n_head % k != 0) --k;
  return k;
}

flowlm::config::ModelConfig bench_config(const std::string& arch, std::int64_t n_layer, std::int64_t n_head,
                                         std::int64_t n_embd, std::int64_t vocab, std::int64_t seq,
                                         std::int64_t n_kv_head, std::int64_t n_ff) {
  flowlm::config::ModelConfig c = flowlm::model::gpt2_config(n_layer, n_head, n_embd, vocab, seq);
  if (arch == "llama") {
    c.arch = "llama";
    c = flowlm::config::with_family_defaults(c, {});
    if (n_kv_head == 0 && n_head >= 1) n_kv_head = default_llama_kv_heads(n_head);
  }
  c.n_kv_head = n_kv_head;  // 0: resolve_model's default (n_head)
  c.n_ff = n_ff;            // 0: the family default
  return flowlm::config::resolve_model(c);
}

}  // namespace

int main(int argc, char** argv) {
  flowlm::comm::Environment mpi(argc, argv);
  flowlm::kernels::BackendScope backend(argc, argv);
  const auto world = flowlm::comm::Communicator::world();

  CLI::App app{"flowlm training-step benchmark"};
  std::int64_t n_layer = 6, n_head = 6, n_embd = 384, vocab = 256, seq = 256, batch = 8;
  std::int64_t n_kv_head = 0, n_ff = 0;
  std::string arch = "gpt2";
  int steps = 10, warmup = 2;
  std::int64_t lora_r = 0;
  app.add_option("--arch", arch, "model family")->check(CLI::IsMember({"gpt2", "llama"}));
  app.add_option("--n-layer", n_layer);
  app.add_option("--n-head", n_head);
  app.add_option("--n-embd", n_embd);
  app.add_option("--vocab", vocab);
  app.add_option("--seq", seq);
  app.add_option("--n-kv-head", n_kv_head,
                 "key/value heads; 0 = n_head (gpt2), n_head / 3 to a divisor (llama)");
  app.add_option("--n-ff", n_ff,
                 "MLP width; 0 = family default (gpt2 4C, llama 8/3 C up to a multiple of 256)");
  app.add_option("--batch", batch, "global batch (sequences), split over the ranks");
  app.add_option("--steps", steps);
  app.add_option("--warmup", warmup);
  app.add_option("--lora-r", lora_r, "LoRA rank (0: every parameter trains)");
  CLI11_PARSE(app, argc, argv);
  if (batch % world.size() != 0) {
    if (world.is_root()) fmt::print(stderr, "--batch {} is not divisible by {} ranks\n", batch, world.size());
    return 2;
  }
  const std::int64_t B = batch / world.size();

  flowlm::config::ModelConfig cfg;
  try {
    cfg = bench_config(arch, n_layer, n_head, n_embd, vocab, seq, n_kv_head, n_ff);
  } catch (const flowlm::ConfigError& e) {
    if (world.is_root()) fmt::print(stderr, "bench_train: {}\n", e.what());
    return 2;
  }
  flowlm::model::Transformer gpt(cfg);
  gpt.init_random(1);
  if (lora_r > 0) {
    flowlm::config::LoraConfig lora;
    lora.r = lora_r;
    gpt.enable_lora(lora);
    gpt.lora()->init_random(2);
  }
  flowlm::train::AdamW opt(gpt.trainable_table(), flowlm::train::AdamWParams{}, gpt.backend());
  std::mt19937 rng(static_cast<unsigned>(42 + world.rank()));
  std::uniform_int_distribution<std::int32_t> tok(0, static_cast<std::int32_t>(vocab - 1));
  std::vector<std::int32_t> x(static_cast<std::size_t>(B * seq)), y(x.size());
  for (auto& v : x) v = tok(rng);
  for (auto& v : y) v = tok(rng);
  const std::vector<float> dloss(x.size(), 1.0f / static_cast<float>(batch * seq));

  std::vector<double> times;
  float loss = 0;
  for (int i = 0; i < warmup + steps; ++i) {
    world.barrier();
    const auto t0 = std::chrono::steady_clock::now();
    gpt.zero_grad();
    loss = gpt.forward(x.data(), y.data(), nullptr, B, seq);
    gpt.backward(dloss.data());
    const auto grads = gpt.trainable_grads_view();
    if (world.size() > 1) world.allreduce_sum(grads.f32(), gpt.num_trainable());
    const double norm = std::sqrt(gpt.backend().sum_squares(grads));
    opt.step(gpt.trainable_params_view(), grads, 3e-4f, flowlm::train::clip_scale(norm, 1.0));
    world.barrier();
    if (i >= warmup)
      times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  const double step = times[times.size() / 2];
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double rss_mb = world.max(static_cast<double>(ru.ru_maxrss) / 1024.0);
  if (world.is_root())
    fmt::print(
        "{{\"impl\": \"flowlm\", \"arch\": \"{}\", \"ranks\": {}, \"threads\": {}, \"vocab\": {}, "
        "\"n_kv_head\": {}, \"n_ff\": {}, \"params\": {}, \"trainable\": {}, \"lora_r\": {}, "
        "\"tokens_per_s\": "
        "{:.1f}, \"step_ms\": {:.1f}, \"peak_rss_mb\": {:.1f}, \"final_loss\": {:.4f}}}\n",
        cfg.arch, world.size(), flowlm::kernels::backend_concurrency(), vocab, cfg.n_kv_head, cfg.n_ff,
        gpt.num_params(), gpt.num_trainable(), lora_r, static_cast<double>(batch * seq) / step, step * 1e3,
        rss_mb, loss);
  return 0;
}
