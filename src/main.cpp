// flowlm command line: placeholder until the CLI lands.
#include "comm/comm.hpp"
#include "kernels/backend.hpp"

int main(int argc, char** argv) {
  flowlm::comm::Environment mpi(argc, argv);
  flowlm::kernels::BackendScope backend(argc, argv);
  return 0;
}
