// One function per stage. main.cpp parses the command line, loads the job file and calls
// the stage; a stage returns normally on success and throws flowlm::Error on failure.
#pragma once

#include <filesystem>
#include <string>

#include "comm/comm.hpp"
#include "config/config.hpp"

namespace flowlm::stages {

/// \brief What every stage gets: the resolved job, where it came from, and the world.
struct StageContext {
  const config::JobConfig& job;
  std::filesystem::path job_file;  ///< empty for stages run without a job file
  comm::Communicator world;
};

void run_prepare(const StageContext& ctx);
void run_train(const StageContext& ctx);
/// \brief `flowlm inspect file.h5`: prints a readable summary of any flowlm HDF5 file.
void run_inspect(const std::filesystem::path& file, const comm::Communicator& world);

}  // namespace flowlm::stages
