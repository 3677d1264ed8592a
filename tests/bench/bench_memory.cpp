// Memory per rank of a training job at several rank counts, with and without ZeRO-1, from the
// trainer's own accounting (train::train_memory) of the job's model: for shapes too large to
// run at every rank count on one machine (tests/bench/run_zero_memory.sh checks the accounting
// against the peak RSS of real runs it can afford).
//   bench_memory JOB.toml [--set section.key=value]... [--ranks 1,2,4]
// Prints one JSON line per (ranks, zero_stage): bytes of weights, gradients, moments, copies,
// activations and the total.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "core/error.hpp"
#include "kernels/backend.hpp"
#include "model/transformer.hpp"
#include "train/trainer.hpp"

int main(int argc, char** argv) {
  flowlm::comm::Environment mpi(argc, argv);
  const flowlm::kernels::BackendScope kokkos(argc, argv);
  CLI::App app{"memory per rank of a training job at several rank counts"};
  std::string job_file;
  std::vector<std::string> sets;
  std::vector<int> ranks = {1, 2, 4};
  app.add_option("job", job_file, "job TOML (its [model], [train] and [finetune] count)")->required();
  app.add_option("--set", sets, "section.key=value overrides");
  app.add_option("--ranks", ranks, "rank counts")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  try {
    const auto job = flowlm::config::load_job(job_file, sets);
    flowlm::model::Transformer model(job.model, job.run.backend);
    if (job.finetune.lora.r > 0) model.enable_lora(job.finetune.lora);
    for (const int zero : {0, 1})
      for (const int n : ranks) {
        auto j = job;
        j.optim.zero_stage = zero;
        const auto m = flowlm::train::train_memory(model, j, n);
        fmt::print(
            "{{\"ranks\": {}, \"zero_stage\": {}, \"params\": {}, \"moment_params\": {}, \"weights\": "
            "{:.0f}, "
            "\"grads\": {:.0f}, \"moments\": {:.0f}, \"copies\": {:.0f}, \"activations\": {:.0f}, \"total\": "
            "{:.0f}}}\n",
            n, zero, model.num_params(), m.moment_params, m.weights, m.grads, m.moments, m.copies,
            m.activations, m.total());
      }
  } catch (const flowlm::Error& e) {
    fmt::print(stderr, "bench_memory: {}\n", e.what());
    return 1;
  }
  return 0;
}
