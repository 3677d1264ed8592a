// The backend factory: names to implementations, and which names this build has.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>

#include "core/error.hpp"
#include "flowlm/build_config.hpp"
#include "kernels/backend.hpp"
#include "kernels/cpu_backend.hpp"
#include "kernels/cuda/device.hpp"
#if FLOWLM_HAVE_CUDA
#include "kernels/cuda/backend.hpp"
#endif

namespace flowlm::kernels {

#if !FLOWLM_HAVE_CUDA
// kernels/cuda/device.hpp promises these in every build.
namespace cuda {
int device_count() { return 0; }
std::string no_device_reason() { return "this build of flowlm has no CUDA backend"; }
std::string description() { return "built without CUDA"; }
}  // namespace cuda
#endif

std::vector<std::string> compiled_backends() {
  if (FLOWLM_HAVE_CUDA) return {"host", "reference", "cuda"};
  return {"host", "reference"};
}

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "host") return make_host_backend();
  if (name == "reference") return make_reference_backend();
  const std::string choices = fmt::format("{}", fmt::join(compiled_backends(), ", "));
  if (name == "cuda") {
#if FLOWLM_HAVE_CUDA
    if (cuda::device_count() == 0) {
      const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
      fail<ConfigError>(
          "run.backend = \"cuda\": no CUDA device visible ({}; CUDA_VISIBLE_DEVICES {}); run on a node with "
          "a GPU "
          "(under Slurm: --gpus) or choose run.backend = \"host\"",
          cuda::no_device_reason(), visible ? fmt::format("= \"{}\"", visible) : std::string("is unset"));
    }
    return cuda::make_cuda_backend();
#else
    fail<ConfigError>(
        "run.backend = \"cuda\": this build of flowlm has no CUDA backend (compiled backends: {}); choose "
        "one "
        "of those",
        choices);
#endif
  }
  fail<ConfigError>("run.backend = \"{}\": unknown backend (compiled backends: {})", name, choices);
}

}  // namespace flowlm::kernels
