// `flowlm inspect file.h5`: rank 0 prints the summary; every rank reports the same error.
#include <iostream>
#include <sstream>

#include "core/error.hpp"
#include "io/inspect.hpp"
#include "stages/stage.hpp"

namespace flowlm::stages {

void run_inspect(const std::filesystem::path& file, const comm::Communicator& world) {
  std::string err;
  if (world.is_root()) {
    std::ostringstream out;  // print only a complete summary
    try {
      io::inspect_file(file, out);
      std::cout << out.str() << std::flush;
    } catch (const Error& e) {
      err = e.what();
    }
  }
  const bool failed = world.any(!err.empty());
  if (!failed) return;
  world.broadcast(err);
  throw IoError(err);
}

}  // namespace flowlm::stages
