// `flowlm import` and `flowlm export`: Hugging Face model directories <-> flowlm checkpoints.
#include <cmath>

#include "io/safetensors.hpp"
#include "model/hf.hpp"
#include "stages/stage.hpp"

namespace flowlm::stages {

void run_import(const std::filesystem::path& hf_dir, const std::filesystem::path& out,
                const comm::Communicator& world) {
  model::import_hf(hf_dir, out, world);
}

void run_export(const std::filesystem::path& checkpoint, const std::filesystem::path& hf_dir,
                const ExportArgs& args, const comm::Communicator& world) {
  model::ExportOptions opt;
  opt.dtype = io::parse_safetensors_dtype(args.dtype);
  opt.architecture = args.architecture;
  opt.max_shard_bytes = static_cast<std::int64_t>(std::llround(args.max_shard_gb * 1e9));
  opt.tokenizer = args.tokenizer;
  opt.adapter = args.adapter;
  model::export_hf(checkpoint, hf_dir, opt, world);
}

}  // namespace flowlm::stages
