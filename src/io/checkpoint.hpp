// HDF5 checkpoints (DESIGN.md "Checkpoints"): one file per saved step, `step_00001000.h5`.
//   /model/<name>   fp32 datasets with the tensor's shape; HF GPT-2 names with dots
//                   ("transformer.h.0.attn.c_attn.weight") are one dataset directly under /model.
//   /optim/<name>   fp32 datasets; a '/' in the name nests groups, e.g. AdamW moments as
//                   "m/transformer.wte.weight" and "v/transformer.wte.weight" -> /optim/m/..., /optim/v/...
//   /model attrs    the model config (model::model_attrs: arch, n_layer, ..., typed int64, float64
//                   or string); absent in checkpoints of flowlm 0.1, which were all GPT-2.
//   root attrs      format_version (int64, 1), step, tokens_seen (int64), config_toml, rng_state,
//                   created_by (strings), data_cursor (int64 array), world_size (int64), plus
//                   free-form string attrs (`kind`, `sources`, ...) carried in CheckpointMeta::extra.
// Writes go to `<name>.tmp`, are closed and fsync'ed, then renamed by rank 0: a crash mid-write
// never damages an existing checkpoint of the same name.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "comm/comm.hpp"
#include "core/types.hpp"
#include "io/hdf5.hpp"

namespace flowlm::io {

/// \brief The checkpoint format this flowlm writes and the newest it reads.
constexpr int kCheckpointFormatVersion = 1;

/// \brief A typed attribute value.
using AttrValue = std::variant<std::int64_t, double, std::string>;

/// \brief Everything a checkpoint records besides tensors.
struct CheckpointMeta {
  std::int64_t step = 0;
  std::int64_t tokens_seen = 0;
  int world_size = 1;
  std::string config_toml;
  std::string rng_state;
  std::vector<std::int64_t> data_cursor;
  std::map<std::string, std::string> extra;      ///< extra root attrs (`kind`, `sources`, ...)
  std::map<std::string, AttrValue> model_attrs;  ///< attrs of /model: the model config
};

/// \brief TensorRef::owner of a tensor that the ranks hold in row parts (ZeRO-1 optimizer state).
constexpr int kRowParts = -1;

/// \brief One tensor to write. `data` (numel(shape) floats) only needs to be valid on `owner`.
struct TensorRef {
  std::string name;
  Shape shape;
  const float* data = nullptr;
  int owner = 0;  ///< the rank holding the tensor, or kRowParts
  /// kRowParts only: this rank holds rows [first_row, first_row + rows) of the tensor at `data`
  /// (rows may be 0); the parts of ranks 0, 1, ... in that order tile the tensor's rows (a
  /// tensor of shape [] has one row).
  index_t first_row = 0, rows = 0;
};

/// \brief How multi-rank writes reach the file: `automatic` uses parallel HDF5 (MPI-IO) when
/// this build has it and the world has several ranks; `funnel` sends every tensor to rank 0,
/// which writes alone (what serial HDF5 builds always do).
enum class WriteStrategy { automatic, funnel };

/// \brief Collective over `world`: writes the checkpoint atomically (tmp file, fsync, rename).
/// Every rank passes the same names, shapes and owners (checked); `meta` is taken from rank 0.
/// Tensors are written by their owner rank (parallel HDF5) or funnelled to rank 0 (serial HDF5);
/// kRowParts tensors by every rank holding rows, each its own hyperslab.
/// On failure every rank throws IoError, the tmp file is removed and an existing file at
/// `path` is left untouched.
void write_checkpoint(const std::filesystem::path& path, const CheckpointMeta& meta,
                      const std::vector<TensorRef>& model, const std::vector<TensorRef>& optim,
                      const comm::Communicator& world, WriteStrategy strategy = WriteStrategy::automatic);

/// \brief Fills `out` (numel floats) with tensor `index` of the model list; called on its owner rank.
using TensorProducer = std::function<void(std::size_t index, float* out)>;
/// \brief Fills `out` with rows [first, first + rows) of tensor `index` of the model list (a row:
/// the trailing dimensions; a scalar is one row); called on its owner rank, rows in order.
using RowProducer = std::function<void(std::size_t index, index_t first, index_t rows, float* out)>;

/// \brief write_checkpoint for outputs computed as they are written (the `average` stage): the
/// `model` entries carry no data; each owner rank calls `produce` for its tensors one at a time,
/// in chunks of whole rows of about `chunk_numel` elements (at least one row), writing each chunk
/// before producing the next, so a rank holds one chunk at a time. No /optim tensors and no
/// kRowParts owners.
/// An exception from `produce` becomes an IoError on every rank (tmp removed, as above).
void write_checkpoint_streamed(const std::filesystem::path& path, const CheckpointMeta& meta,
                               const std::vector<TensorRef>& model, const RowProducer& produce,
                               index_t chunk_numel, const comm::Communicator& world,
                               WriteStrategy strategy = WriteStrategy::automatic);
/// \brief The same with whole tensors: a rank holds one output tensor at a time.
void write_checkpoint_streamed(const std::filesystem::path& path, const CheckpointMeta& meta,
                               const std::vector<TensorRef>& model, const TensorProducer& produce,
                               const comm::Communicator& world,
                               WriteStrategy strategy = WriteStrategy::automatic);

/// \brief Read-only access to one checkpoint; any rank, no collectives. The constructor
/// validates the file (HDF5 signature, format_version, required attributes, /model group).
class CheckpointReader {
 public:
  explicit CheckpointReader(const std::filesystem::path& path);

  const std::filesystem::path& path() const { return file_.path(); }
  const CheckpointMeta& meta() const { return meta_; }
  /// \brief (name, shape) of every tensor in "model" or "optim", in write order; names are
  /// relative to the group ("m/transformer.wte.weight"). An absent group lists nothing.
  std::vector<std::pair<std::string, Shape>> tensors(const std::string& group) const;
  bool has(const std::string& group, const std::string& name) const;
  /// \brief Reads `/group/name` into out (numel(expected) floats). IoError naming the file and
  /// dataset when it is missing or its shape differs from `expected`.
  void read(const std::string& group, const std::string& name, const Shape& expected, float* out) const;
  /// \brief Reads rows [first, first + count) of `/group/name` (its shape checked as above) into
  /// out (count rows); a tensor of shape [] has one row.
  void read_rows(const std::string& group, const std::string& name, const Shape& expected, index_t first,
                 index_t count, float* out) const;
  /// \brief Reads `/group/name` whatever its shape.
  Tensor read(const std::string& group, const std::string& name) const;
  /// \brief The underlying file, for attributes written by later stages.
  const h5::File& file() const { return file_; }

 private:
  h5::File file_;
  CheckpointMeta meta_;
};

/// \brief "step_00001000.h5"
std::string checkpoint_name(std::int64_t step);

/// \brief Checkpoints (`step_<digits>.h5`) in a run dir sorted by step; ignores `*.tmp` and
/// other files. A missing directory has none.
std::vector<std::pair<std::int64_t, std::filesystem::path>> list_checkpoints(
    const std::filesystem::path& dir);

/// \brief The newest checkpoint in `dir` that opens and validates; corrupt newer ones are
/// skipped with a warning. Empty when there is none.
std::optional<std::filesystem::path> newest_valid_checkpoint(const std::filesystem::path& dir);

/// \brief Rank 0 only: deletes all but the `keep_last` newest checkpoints (keep_last <= 0 keeps all).
void prune_checkpoints(const std::filesystem::path& dir, std::int64_t keep_last);

}  // namespace flowlm::io
