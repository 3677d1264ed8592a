// Helper for tests/bench/bench_average.sh: writes a set of GPT checkpoints to average, and
// reads them back the plain way (every /model dataset of every file, one after another, into
// one reused buffer) to give the sequential-read baseline the averaging job is compared with.
//   bench_average make DIR --count N [--n-layer L --n-embd C --vocab V --block T]
//   bench_average read DIR            -> one JSON line: bytes, seconds, MB/s
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <vector>

#include "comm/comm.hpp"
#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "kernels/backend.hpp"
#include "model/transformer.hpp"

int main(int argc, char** argv) {
  flowlm::comm::Environment mpi(argc, argv);
  const flowlm::kernels::BackendScope kokkos(argc, argv);
  CLI::App app{"checkpoint files for the averaging benchmark"};
  app.require_subcommand(1);
  std::string dir;
  int count = 5;
  flowlm::model::ModelConfig cfg = flowlm::model::gpt2_config(6, 8, 512, 50257, 1024);
  auto* make = app.add_subcommand("make", "write step_*.h5 checkpoints of a GPT shape");
  make->add_option("dir", dir)->required();
  make->add_option("--count", count);
  make->add_option("--n-layer", cfg.n_layer);
  make->add_option("--n-embd", cfg.n_embd);
  make->add_option("--vocab", cfg.vocab_size);
  make->add_option("--block", cfg.block_size);
  auto* read = app.add_subcommand("read", "read every model tensor of every step_*.h5 in DIR");
  read->add_option("dir", dir)->required();
  CLI11_PARSE(app, argc, argv);
  try {
    if (*make) {
      cfg.n_head = 8;
      flowlm::model::Transformer gpt(cfg);
      for (int i = 1; i <= count; ++i) {
        gpt.init_random(static_cast<std::uint64_t>(i));
        flowlm::io::CheckpointMeta meta;
        meta.step = i * 100;
        meta.data_cursor = {0};
        meta.config_toml = "";
        std::vector<flowlm::io::TensorRef> refs;
        for (const auto& p : gpt.param_table()) refs.push_back({p.name, p.shape, gpt.params() + p.offset, 0});
        flowlm::io::write_checkpoint(std::filesystem::path(dir) / flowlm::io::checkpoint_name(meta.step),
                                     meta, refs, {}, flowlm::comm::Communicator::self());
      }
      std::printf("{\"files\": %d, \"params\": %lld}\n", count, static_cast<long long>(gpt.num_params()));
      return 0;
    }
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<float> buf;
    double bytes = 0;
    for (const auto& [step, path] : flowlm::io::list_checkpoints(dir)) {
      const flowlm::io::CheckpointReader r(path);
      for (const auto& [name, shape] : r.tensors("model")) {
        buf.resize(static_cast<std::size_t>(flowlm::shape_numel(shape)));
        r.read("model", name, shape, buf.data());
        bytes += 4.0 * static_cast<double>(buf.size());
      }
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("{\"bytes\": %.0f, \"seconds\": %.4f, \"mb_per_s\": %.1f}\n", bytes, s, bytes / s / 1e6);
  } catch (const flowlm::Error& e) {
    std::fprintf(stderr, "bench_average: %s\n", e.what());
    return 1;
  }
  return 0;
}
