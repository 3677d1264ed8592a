// The main of every test program: MPI, then the kernel backend, then GoogleTest.
// Under mpiexec only rank 0 prints GoogleTest's report; every rank's failures decide the
// exit code, so a failure on any rank fails the test.
#include <gtest/gtest.h>

#include "comm/comm.hpp"
#include "core/log.hpp"
#include "kernels/backend.hpp"

int main(int argc, char** argv) {
  flowlm::comm::Environment mpi(argc, argv);
  flowlm::kernels::BackendScope backend(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  const auto world = flowlm::comm::Communicator::world();
  flowlm::log::set_rank(world.rank());
  if (world.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int rc = RUN_ALL_TESTS();
  return world.any(rc != 0) ? 1 : 0;
}
