// flowlm: one binary, one job file per run.
//
//   flowlm <stage> <job.toml> [--set section.key=value]... [--dry-run]
//   flowlm inspect <file.h5>
//   flowlm import <hf_dir> <out.h5>  |  flowlm export <ckpt.h5> <hf_dir> [--dtype bf16] [--adapter]
//   flowlm merge <lora.h5> <out.h5>
//   flowlm --version | --help | <stage> --help
//
// Library code throws typed errors (src/core/error.hpp); this file alone turns them into a
// message and an exit code: 0 success, 1 failure, 2 usage error, 3 interrupted by a signal
// after saving a checkpoint (resumable: a batch script requeues the job).
#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "comm/watchdog.hpp"
#include "config/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "flowlm/build_config.hpp"
#include "io/hdf5.hpp"
#include "kernels/backend.hpp"
#include "kernels/cuda/device.hpp"
#include "model/checkpoint.hpp"
#include "stages/stage.hpp"

namespace {

using flowlm::comm::Communicator;

/// Thrown on every rank when all ranks know that a step failed (e.g. a bad job file): only
/// rank 0 reports it, and nobody needs to abort the others.
struct AgreedFailure {
  int code;
  std::string message;
};

/// Loads the job on every rank; if any rank fails, all ranks throw AgreedFailure together.
flowlm::config::JobConfig load_job_everywhere(const std::filesystem::path& file,
                                              const std::vector<std::string>& overrides,
                                              const std::string& stage, const Communicator& world) {
  flowlm::config::JobConfig job;
  std::string error;
  try {
    job = flowlm::config::load_job(file, overrides);
    flowlm::config::check_stage(job, stage);
  } catch (const flowlm::Error& e) {
    error = e.what();
  }
  if (world.any(!error.empty())) {
    std::string msg = error;
    world.broadcast(msg);  // rank 0's words (every rank reads the same file)
    throw AgreedFailure{1, msg.empty() ? "another rank could not read the job file" : msg};
  }
  return job;
}

/// A stage that runs from a job file.
struct JobStage {
  const char* name;
  const char* summary;
  void (*run)(const flowlm::stages::StageContext&);
};

const std::vector<JobStage>& job_stages() {
  static const std::vector<JobStage> stages = {
      {"prepare", "tokenize text files into train/val token shards (prepare.*)", flowlm::stages::run_prepare},
      {"train", "train a GPT on token shards, with checkpoints and resume (model.*, optim.*, train.*)",
       flowlm::stages::run_train},
      {"inherit", "copy the first k blocks of a larger checkpoint into a small model (inherit.*)",
       flowlm::stages::run_inherit},
      {"average", "average saved checkpoints: LAWA, SWA, EMA or interpolation (average.*)",
       flowlm::stages::run_average},
      {"score",
       "score a sample set with a pre-trained checkpoint: per-sample loss and FLOW weight (score.*, flow.*)",
       flowlm::stages::run_score},
      {"eval",
       "loss and exact match on token shards and sample sets, benchmark tasks (lm-eval's metrics with "
       "standard "
       "errors), the forgetting table of --compare base.h5 tuned.h5 (eval.*)",
       flowlm::stages::run_eval},
      {"generate", "completions of prompts with a KV cache: greedy, temperature, top-k, top-p (generate.*)",
       flowlm::stages::run_generate},
  };
  return stages;
}

std::string version_text() {
  std::string cuda = "no (built without CUDA)";
#if FLOWLM_HAVE_CUDA
  cuda = "yes, " + flowlm::kernels::cuda::description();
#endif
  return fmt::format(
      "flowlm {} ({})\n"
      "  host backend : {}\n"
      "  CUDA         : {}\n"
      "  MPI          : {}\n"
      "  HDF5         : {} ({})\n",
      FLOWLM_VERSION, FLOWLM_GIT_DESCRIBE, flowlm::kernels::backend_description(), cuda,
      flowlm::comm::mpi_library_version(), FLOWLM_HDF5_VERSION,
      FLOWLM_HDF5_PARALLEL ? "parallel: ranks write their own tensors collectively"
                           : "serial: multi-rank writes funnel through rank 0");
}

int run(int argc, char** argv, const Communicator& world) {
  CLI::App app{
      "flowlm: FLOW fine-tuning, Inheritune and LAWA averaging for GPT models on HPC systems.\n"
      "Each stage is one batch step: `srun flowlm <stage> job.toml` under Slurm, or plain\n"
      "`flowlm <stage> job.toml` on one process. Relative paths in job files are relative to\n"
      "the working directory.",
      "flowlm"};
  app.require_subcommand(0, 1);
  bool show_version = false;
  app.add_flag("--version", show_version, "print the version and the backends this build uses, then exit");
  app.footer(
      "Run `flowlm <stage> --help` for a stage's options; `flowlm reference` prints every job-file key.");

  std::filesystem::path job_file;
  std::vector<std::string> overrides;
  std::vector<std::string> compare;
  bool dry_run = false;
  std::vector<std::pair<CLI::App*, const JobStage*>> subs;
  for (const auto& st : job_stages()) {
    CLI::App* sub = app.add_subcommand(st.name, st.summary);
    sub->add_option("job", job_file, "the job file (TOML)")->required();
    sub->add_option("--set", overrides, "override one job-file key: --set section.key=value (repeatable)")
        ->type_name("KEY=VALUE")
        ->allow_extra_args(false);
    sub->add_flag("--dry-run", dry_run, "print the fully resolved job as TOML and exit");
    if (const std::string keys = flowlm::config::section_help(st.name); !keys.empty())
      sub->footer(
          fmt::format("Job-file keys of [{}] (defaults shown; `flowlm reference` lists every section):\n{}",
                      st.name, keys));
    if (std::string(st.name) == "eval")
      sub->add_option("--compare", compare,
                      "evaluate two checkpoints, base then tuned, and print the forgetting table (sets "
                      "eval.compare)")
          ->expected(2)
          ->type_name("BASE TUNED");
    subs.emplace_back(sub, &st);
  }
  std::filesystem::path inspect_file;
  CLI::App* inspect = app.add_subcommand("inspect", "print a readable summary of a flowlm HDF5 file");
  inspect->add_option("file", inspect_file, "checkpoint, sample set or scores file (.h5)")->required();
  std::filesystem::path hf_in, hf_out;
  CLI::App* import_cmd = app.add_subcommand(
      "import", "convert a Hugging Face model dir (GPT-2, Llama, Mistral, Qwen2, Gemma-2) into a checkpoint");
  import_cmd->add_option("hf_dir", hf_in, "directory with config.json and model.safetensors (or its index)")
      ->required();
  import_cmd->add_option("out", hf_out, "checkpoint to write (.h5); tokenizer files go to <out>.tokenizer/")
      ->required();
  flowlm::stages::ExportArgs export_args;
  CLI::App* export_cmd = app.add_subcommand(
      "export", "write a checkpoint as a Hugging Face model dir (config.json, safetensors)");
  export_cmd->add_option("checkpoint", hf_in, "flowlm checkpoint (.h5)")->required();
  export_cmd->add_option("hf_dir", hf_out, "output directory (created; its weights are replaced)")
      ->required();
  export_cmd->add_option("--dtype", export_args.dtype, "weights as f32 or bf16")->capture_default_str();
  export_cmd->add_option("--architecture", export_args.architecture,
                         "GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM or "
                         "Gemma2ForCausalLM (default: the imported model's, else derived from the config)");
  export_cmd
      ->add_option("--max-shard-gb", export_args.max_shard_gb,
                   "split the weights into shards of at most this size (GB; 0: one file)")
      ->capture_default_str();
  export_cmd->add_option(
      "--tokenizer", export_args.tokenizer,
      "tokenizer dir or file to copy along (default: the one recorded by the checkpoint or "
      "the model it started from)");
  export_cmd->add_flag("--adapter", export_args.adapter,
                       "LoRA checkpoints: write only the adapters, as PEFT's adapter_config.json and "
                       "adapter_model.safetensors (default: the base with the adapters folded in)");
  CLI::App* merge_cmd =
      app.add_subcommand("merge", "fold the LoRA adapters of a checkpoint into its base: a plain checkpoint");
  merge_cmd->add_option("lora_checkpoint", hf_in, "checkpoint of a finetune.lora run (.h5)")->required();
  merge_cmd->add_option("out", hf_out, "checkpoint to write (.h5)")->required();
  CLI::App* reference =
      app.add_subcommand("reference", "print every job-file key with its default and meaning");
  flowlm::stages::DemoOptions demo_opt;
  CLI::App* demo = app.add_subcommand(
      "demo", "the whole pipeline on a synthetic corpus in minutes: pretrain, LAWA, FLOW, Inheritune, eval");
  demo->add_option("--dir", demo_opt.dir, "where the demo writes its data, runs, table and plots")
      ->capture_default_str();
  demo->add_option("--seed", demo_opt.seed, "seed of the synthetic corpus and of every run")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (world.rank() != 0) return e.get_exit_code() == 0 ? 0 : 2;
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  if (show_version) {
    if (world.is_root()) std::fputs(version_text().c_str(), stdout);
    return 0;
  }
  if (*reference) {
    if (world.is_root()) std::fputs(flowlm::config::reference_toml().c_str(), stdout);
    return 0;
  }
  if (*demo) {
    flowlm::stages::run_demo(demo_opt, world);
    return 0;
  }
  if (*import_cmd) {
    flowlm::stages::run_import(hf_in, hf_out, world);
    return 0;
  }
  if (*export_cmd) {
    flowlm::stages::run_export(hf_in, hf_out, export_args, world);
    return 0;
  }
  if (*merge_cmd) {
    flowlm::model::merge_lora_checkpoint(hf_in, hf_out, world);
    return 0;
  }
  if (*inspect) {
    flowlm::stages::run_inspect(inspect_file, world);
    return 0;
  }
  for (const auto& [sub, st] : subs) {
    if (!*sub) continue;
    if (!compare.empty()) {
      // A TOML array of basic strings: JSON's string escapes are TOML's.
      std::string list;
      for (const auto& c : compare) list += (list.empty() ? "" : ", ") + nlohmann::json(c).dump();
      overrides.push_back("eval.compare=[" + list + "]");
    }
    const flowlm::config::JobConfig job = load_job_everywhere(job_file, overrides, st->name, world);
    if (dry_run) {
      if (world.is_root()) std::fputs(flowlm::config::to_toml(job).c_str(), stdout);
      return 0;
    }
    flowlm::comm::Watchdog::set_timeout(job.run.collective_timeout);
    const flowlm::log::ActivityScope doing(st->name);
    st->run(flowlm::stages::StageContext{job, job_file, world});
    return 0;
  }
  if (world.is_root()) std::fputs(app.help().c_str(), stdout);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  flowlm::comm::Environment mpi(argc, argv);
  flowlm::kernels::BackendScope backend(argc, argv);
  const Communicator world = Communicator::world();
  flowlm::log::set_rank(world.rank());
  // Until the job is read, collectives wait as long as run.collective_timeout's default.
  const flowlm::comm::Watchdog watchdog(world.rank(), world.size(),
                                        flowlm::config::RunConfig{}.collective_timeout);

  int code = 0;
  std::string message;
  try {
    code = run(argc, argv, world);
  } catch (const AgreedFailure& e) {
    if (world.is_root()) std::fprintf(stderr, "flowlm: error: %s\n", e.message.c_str());
    return e.code;
  } catch (const flowlm::UsageError& e) {
    code = 2;
    message = e.what();
  } catch (const flowlm::Interrupted& e) {
    // Every rank agreed to stop and the state is saved: say so once, no abort needed.
    if (world.is_root()) std::fprintf(stderr, "flowlm: %s\n", e.what());
    return 3;
  } catch (const flowlm::Error& e) {
    code = 1;
    message = e.what();
  } catch (const std::exception& e) {
    code = 1;
    message = fmt::format("internal error: {}", e.what());
  }
  if (code != 0 && !message.empty()) {
    // What the failing rank was doing (activity scopes keep it while an exception unwinds).
    const std::string doing = flowlm::log::activity();
    std::string where = world.size() > 1 ? fmt::format("rank {}", world.rank()) : "";
    if (!doing.empty()) where += (where.empty() ? "" : ", ") + std::string("during ") + doing;
    if (!where.empty()) where = " (" + where + ")";
    std::fprintf(stderr, "flowlm: error%s: %s\n", where.c_str(), message.c_str());
    std::fflush(stderr);
    // Ranks that did not fail may be waiting in a collective: end the whole job.
    if (world.size() > 1) world.abort(code);
    if (flowlm::io::h5::file_close_failed()) {
      std::fflush(stdout);
      std::_Exit(code);  // see file_close_failed: finalizing would crash inside HDF5
    }
  }
  return code;
}
