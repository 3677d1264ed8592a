// Structure-aware HDF5 inputs. Raw-byte fuzzing of .h5 files mostly exercises libhdf5's own
// parser (bugs we cannot fix there); these targets instead read a small text recipe that decides
// the datasets (name, element type, shape, values) and attributes (name, kind, values) of
// well-formed files, write them with flowlm's own HDF5 layer (src/io/hdf5.hpp), and then hand
// them to flowlm's reader. The recipe is lenient: a line it cannot read is skipped, so most
// mutations still make a file. One line per object:
//
//   file <name>                                  later lines go into this file (in scratch_dir())
//   dataset <path> <dtype> <shape> [values...]   dtype: u8 i8 u16 i16 u32 i32 u64 i64 f32 f64;
//                                                shape: scalar or dims joined by x (3, 2x4, 0)
//   attr <name> <kind> [values...]               kind: int float str ints floats (str: the rest)
//   <anything else>                              kept in H5Spec::directives for the target
//
// Values are numbers (nan, inf, hex and negatives allowed), converted to the element type with
// saturation; fewer values than elements repeat the given ones (none: 0, 1, 2, ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace flowlm::fuzz {

struct H5Object {
  enum class Kind { dataset, attr_int, attr_float, attr_str, attr_ints, attr_floats } kind = Kind::dataset;
  std::string name, dtype, text;
  std::vector<std::int64_t> shape;  ///< datasets; empty = scalar
  bool scalar = false;
  std::vector<long double> values;
};

struct H5Spec {
  std::map<std::string, std::vector<H5Object>> files;  ///< file name -> its objects in order
  std::vector<std::vector<std::string>> directives;    ///< other lines, split on blanks
};

/// \brief Reads a recipe; `first_file` receives the objects before any `file` line.
H5Spec parse_h5_spec(std::string_view text, const std::string& first_file);

/// \brief Writes every file of the spec into scratch_dir() (removing the spec's files of the previous
/// input first). Returns false when flowlm's HDF5 layer refused to write one (a name HDF5 rejects);
/// the target then skips the input.
bool write_h5_spec(const H5Spec& spec, const std::vector<std::string>& all_files);

}  // namespace flowlm::fuzz
