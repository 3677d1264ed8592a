// A readable summary of any of our HDF5 files (checkpoints, sample sets, scores): the work
// behind `flowlm inspect`, kept in io/ because only io/ reads HDF5.
#pragma once

#include <filesystem>
#include <ostream>

namespace flowlm::io {

/// \brief Writes to `out`: root attributes (long multi-line strings such as config_toml
/// shortened to their line count), then every dataset with path, dtype and shape, and for
/// numeric ones min / max (plus L2 norm and mean for floats), then totals. IoError for a
/// missing, foreign or damaged file.
void inspect_file(const std::filesystem::path& file, std::ostream& out);

}  // namespace flowlm::io
