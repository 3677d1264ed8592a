// The backend factory: names to implementations, and which names this build has.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "kernels/backend.hpp"
#include "kernels/cpu_backend.hpp"

namespace flowlm::kernels {

std::vector<std::string> compiled_backends() { return {"host", "reference"}; }

std::unique_ptr<Backend> make_backend(const std::string& name) {
  if (name == "host") return make_host_backend();
  if (name == "reference") return make_reference_backend();
  const std::string choices = fmt::format("{}", fmt::join(compiled_backends(), ", "));
  if (name == "cuda") {
    fail<ConfigError>(
        "run.backend = \"cuda\": this build of flowlm has no CUDA backend (compiled backends: {}); choose "
        "one "
        "of those",
        choices);
  }
  fail<ConfigError>("run.backend = \"{}\": unknown backend (compiled backends: {})", name, choices);
}

}  // namespace flowlm::kernels
