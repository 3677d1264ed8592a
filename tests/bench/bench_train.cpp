// Training throughput of flowlm's host backend: the same step as the PyTorch peer
// (bench_train_torch.py): forward, backward, gradient all-reduce (under mpirun), global-norm
// clipping and AdamW, on a fixed random batch. Prints one JSON line (rank 0).
#include <sys/resource.h>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "comm/comm.hpp"
#include "kernels/backend.hpp"
#include "kernels/kernels.hpp"
#include "model/transformer.hpp"
#include "train/optimizer.hpp"

int main(int argc, char** argv) {
  flowlm::comm::Environment mpi(argc, argv);
  flowlm::kernels::BackendScope backend(argc, argv);
  const auto world = flowlm::comm::Communicator::world();

  CLI::App app{"flowlm training-step benchmark"};
  std::int64_t n_layer = 6, n_head = 6, n_embd = 384, vocab = 256, seq = 256, batch = 8;
  int steps = 10, warmup = 2;
  app.add_option("--n-layer", n_layer);
  app.add_option("--n-head", n_head);
  app.add_option("--n-embd", n_embd);
  app.add_option("--vocab", vocab);
  app.add_option("--seq", seq);
  app.add_option("--batch", batch, "global batch (sequences), split over the ranks");
  app.add_option("--steps", steps);
  app.add_option("--warmup", warmup);
  CLI11_PARSE(app, argc, argv);
  if (batch % world.size() != 0) {
    if (world.is_root()) fmt::print(stderr, "--batch {} is not divisible by {} ranks\n", batch, world.size());
    return 2;
  }
  const std::int64_t B = batch / world.size();

  flowlm::model::Transformer gpt(flowlm::model::gpt2_config(n_layer, n_head, n_embd, vocab, seq));
  gpt.init_random(1);
  flowlm::train::AdamW opt(gpt, flowlm::train::AdamWParams{});
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
    if (world.size() > 1) world.allreduce_sum(gpt.grads(), gpt.num_params());
    const double norm = std::sqrt(flowlm::kernels::sum_squares(gpt.grads(), gpt.num_params()));
    opt.step(gpt.params(), gpt.grads(), 3e-4f, flowlm::train::clip_scale(norm, 1.0));
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
        "{{\"impl\": \"flowlm\", \"ranks\": {}, \"threads\": {}, \"vocab\": {}, \"tokens_per_s\": {:.1f}, "
        "\"step_ms\": {:.1f}, \"peak_rss_mb\": {:.1f}, \"final_loss\": {:.4f}}}\n",
        world.size(), flowlm::kernels::backend_concurrency(), vocab, static_cast<double>(batch * seq) / step,
        step * 1e3, rss_mb, loss);
  return 0;
}
