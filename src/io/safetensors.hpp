// safetensors files (the Hugging Face weight format), parsed natively:
//   8 bytes   little-endian u64 N, the header length
//   N bytes   UTF-8 JSON: {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
//             ..., "__metadata__": {"<key>": "<string>"}}, padded with spaces
//   the rest  the tensors' bytes, little-endian, row-major; offsets relative to the end of the header
// Readers memory-map the file and validate everything before the first read: the header length,
// the JSON, every dtype, shape and offset (contiguous, without gaps or overlaps, inside the file).
// A model directory holds `model.safetensors` or shards listed by `model.safetensors.index.json`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/types.hpp"

namespace flowlm::io {

/// \brief A tensor's entry in a safetensors header.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  ///< "F32", "F16", "BF16", "F64", "I64", ... as written
  Shape shape;
  std::uint64_t begin = 0, end = 0;  ///< byte offsets into the data section
};

/// \brief One memory-mapped, validated safetensors file. Read-only; any thread.
class SafetensorsFile {
 public:
  /// \brief Opens and validates `path`; IoError naming the file (and the tensor) on any defect.
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::filesystem::path& path() const { return path_; }
  /// \brief Every tensor, in data order.
  const std::vector<SafetensorsEntry>& tensors() const { return entries_; }
  /// \brief The entry called `name`, or null.
  const SafetensorsEntry* find(const std::string& name) const;
  /// \brief The `__metadata__` strings (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// \brief Converts tensor `name` (F32, F16 or BF16) to fp32 into out[numel]; IoError naming the file
  /// and tensor when it is missing, of another dtype, or not of shape `expected`.
  void read_f32(const std::string& name, const Shape& expected, float* out) const;

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  const unsigned char* map_ = nullptr;
  std::size_t size_ = 0;
  std::size_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

/// \brief The weights of a Hugging Face model directory: `model.safetensors`, or the shards named by
/// `model.safetensors.index.json` (each opened on first use). A path to one .safetensors file works too.
class SafetensorsModel {
 public:
  explicit SafetensorsModel(const std::filesystem::path& dir_or_file);
  ~SafetensorsModel();
  /// \brief Every tensor name with its shape and dtype, shards in index order.
  std::vector<SafetensorsEntry> tensors() const;
  bool has(const std::string& name) const;
  /// \brief As SafetensorsFile::read_f32, in whichever shard holds `name`.
  void read_f32(const std::string& name, const Shape& expected, float* out) const;
  /// \brief The files this model reads (one, or the shards).
  std::vector<std::filesystem::path> files() const;

 private:
  const SafetensorsFile& shard(const std::string& file) const;
  std::filesystem::path where_;  ///< the directory (or the single file)
  std::vector<std::string> shard_names_;
  std::map<std::string, std::string> weight_map_;  ///< tensor -> shard file name
  mutable std::map<std::string, std::unique_ptr<SafetensorsFile>> open_;
};

/// \brief Output element type of the writers.
enum class SafetensorsDType { f32, bf16 };
/// \brief "F32" / "BF16".
const char* safetensors_dtype_name(SafetensorsDType dtype);
/// \brief "f32" | "bf16" (as on the command line) -> dtype; UsageError otherwise.
SafetensorsDType parse_safetensors_dtype(const std::string& text);

/// \brief One tensor to write: its name and shape; its values come from the producer.
struct SafetensorsOut {
  std::string name;
  Shape shape;
};
/// \brief Fills out[numel] with tensor `index` of the list, in fp32 (converted on write).
using SafetensorsProducer = std::function<void(std::size_t index, float* out)>;

/// \brief Writes one safetensors file, one tensor in memory at a time, through `<path>.tmp` and a
/// rename (an existing file is never half overwritten). IoError naming the file on failure.
void write_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsOut>& tensors,
                       SafetensorsDType dtype, const SafetensorsProducer& produce,
                       const std::map<std::string, std::string>& metadata = {});

/// \brief Writes a model directory's weights: `model.safetensors` when they fit in `max_shard_bytes`
/// (<= 0: no limit), else `model-0000k-of-0000n.safetensors` shards plus
/// `model.safetensors.index.json`, as transformers' save_pretrained does. Returns the files written.
std::vector<std::filesystem::path> write_safetensors_model(
    const std::filesystem::path& dir, const std::vector<SafetensorsOut>& tensors, SafetensorsDType dtype,
    const SafetensorsProducer& produce, std::int64_t max_shard_bytes,
    const std::map<std::string, std::string>& metadata = {});

/// \brief fp32 -> bf16 with round-to-nearest-even (NaN stays NaN), as torch converts.
std::uint16_t f32_to_bf16(float x);
float bf16_to_f32(std::uint16_t x);
/// \brief IEEE half -> fp32 (subnormals, Inf and NaN included).
float f16_to_f32(std::uint16_t x);

}  // namespace flowlm::io
