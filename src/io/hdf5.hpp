// Small RAII layer over the HDF5 C API. Only src/io includes <hdf5.h>; other modules write
// and read their HDF5 files (checkpoints, sample sets, scores) through File and Dataset.
// Every failure is an IoError that names the file, the object and HDF5's own reason;
// HDF5's automatic error-stack printing is switched off.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <type_traits>
#include <vector>

#include "comm/comm.hpp"
#include "core/types.hpp"

namespace flowlm::io::h5 {

/// \brief Switches off HDF5's printing of its error stack (errors become IoError instead).
void silence_errors();

/// \brief The innermost messages of HDF5's current error stack, e.g. "truncated file: eof = ...".
std::string error_stack_text();

/// \brief Owns one hid_t and closes it with the matching H5?close. Move-only.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), close_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  /// Closes now and returns HDF5's status (negative on failure); the handle is empty afterwards.
  herr_t close();
  /// Closes, ignoring failures (destructor path).
  void reset() { (void)close(); }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

/// \brief Element types flowlm stores. `string` and `other` occur only when reading.
enum class DType { f32, f64, i8, u8, i16, u16, i32, u32, i64, u64, string, other };

/// \brief "float32", "int64", "string", ...
const char* dtype_name(DType t);
/// \brief Bytes per element (0 for string/other).
std::size_t dtype_size(DType t);
inline bool dtype_is_float(DType t) { return t == DType::f32 || t == DType::f64; }
inline bool dtype_is_int(DType t) { return t >= DType::i8 && t <= DType::u64; }

/// \brief The DType of a C++ element type (float, double, [u]int{8,16,32,64}_t).
template <class T>
constexpr DType dtype_of() {
  if constexpr (std::is_same_v<T, float>)
    return DType::f32;
  else if constexpr (std::is_same_v<T, double>)
    return DType::f64;
  else if constexpr (std::is_same_v<T, std::int8_t>)
    return DType::i8;
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return DType::u8;
  else if constexpr (std::is_same_v<T, std::int16_t>)
    return DType::i16;
  else if constexpr (std::is_same_v<T, std::uint16_t>)
    return DType::u16;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return DType::i32;
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return DType::u32;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return DType::i64;
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return DType::u64;
  else
    static_assert(sizeof(T) == 0, "unsupported HDF5 element type");
}

/// \brief What a dataset holds: full path ("/model/x"), element type, shape ({} = scalar).
struct DatasetInfo {
  std::string path;
  DType dtype = DType::other;
  Shape shape;
};

/// \brief An open dataset. Reads and writes convert between the C++ type T and the stored
/// type (e.g. uint16 tokens read as int32). Pointers must hold the selected element count.
class Dataset {
 public:
  const std::string& path() const { return path_; }
  const Shape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  index_t numel() const { return shape_numel(shape_); }

  /// \brief Writes the whole dataset (independent I/O in a parallel file).
  template <class T>
  void write(const T* data) {
    write_raw(dtype_of<T>(), data, -1, 0);
  }
  /// \brief Writes rows [first, first+count) of dimension 0.
  template <class T>
  void write_rows(index_t first, index_t count, const T* data) {
    write_raw(dtype_of<T>(), data, first, count);
  }
  /// \brief Reads the whole dataset into out (numel() elements).
  template <class T>
  void read(T* out) const {
    read_raw(dtype_of<T>(), out, -1, 0);
  }
  template <class T>
  std::vector<T> read() const {
    std::vector<T> v(static_cast<std::size_t>(numel()));
    read(v.data());
    return v;
  }
  /// \brief Reads rows [first, first+count) of dimension 0 (count * row size elements).
  template <class T>
  void read_rows(index_t first, index_t count, T* out) const {
    read_raw(dtype_of<T>(), out, first, count);
  }

  /// Untyped forms of the above; first < 0 selects the whole dataset.
  void write_raw(DType mem, const void* data, index_t first, index_t count);
  void read_raw(DType mem, void* out, index_t first, index_t count) const;

 private:
  friend class File;
  Handle h_;
  std::filesystem::path file_;
  std::string path_;
  Shape shape_;
  DType dtype_ = DType::other;
};

/// \brief An open HDF5 file. Object paths are absolute ("/model/x") or relative to the root.
/// Groups are created on demand and track creation order, so listings come back in the
/// order things were written. In a parallel file every rank must make the same
/// create/attribute/close calls in the same order; dataset writes are independent.
class File {
 public:
  /// \brief Opens read-only; IoError for a missing file, a non-HDF5 file or one HDF5 cannot open.
  static File open(const std::filesystem::path& path);
  /// \brief Opens an existing file for reading and writing.
  static File open_rw(const std::filesystem::path& path);
  /// \brief Creates (truncates) a file on this rank only.
  static File create(const std::filesystem::path& path);
  /// \brief Collective over `comm`: creates (truncates) one shared file with the MPI-IO driver.
  /// Throws IoError where this build's HDF5 is serial.
  static File create_parallel(const std::filesystem::path& path, const comm::Communicator& comm);

  File(File&&) = default;
  File& operator=(File&&) = default;
  ~File() = default;

  const std::filesystem::path& path() const { return path_; }
  hid_t id() const { return h_.get(); }
  bool parallel() const { return parallel_; }
  /// \brief Flushes and closes (collective in a parallel file); throws IoError on failure.
  void close();

  /// \brief True when every link of the path exists (a group or a dataset).
  bool exists(const std::string& obj) const;
  bool is_dataset(const std::string& obj) const;
  bool is_group(const std::string& obj) const;
  /// \brief Creates the group and any missing parents.
  void create_group(const std::string& group);

  // ---- attributes on an object (default: the root group) -------------------------------
  std::vector<std::string> attr_names(const std::string& obj = "/") const;
  bool has_attr(const std::string& name, const std::string& obj = "/") const;
  /// Writers replace an existing attribute of the same name. Strings are UTF-8, variable length.
  void write_attr(const std::string& name, const std::string& value, const std::string& obj = "/");
  void write_attr(const std::string& name, const char* value, const std::string& obj = "/") {
    write_attr(name, std::string(value), obj);
  }
  void write_attr(const std::string& name, std::int64_t value, const std::string& obj = "/");
  void write_attr(const std::string& name, double value, const std::string& obj = "/");
  void write_attr(const std::string& name, const std::vector<std::int64_t>& value,
                  const std::string& obj = "/");
  void write_attr(const std::string& name, const std::vector<double>& value, const std::string& obj = "/");
  /// Readers throw IoError naming the file and attribute when it is missing or of another kind.
  std::string read_attr_string(const std::string& name, const std::string& obj = "/") const;
  std::int64_t read_attr_int(const std::string& name, const std::string& obj = "/") const;
  double read_attr_double(const std::string& name, const std::string& obj = "/") const;
  std::vector<std::int64_t> read_attr_ints(const std::string& name, const std::string& obj = "/") const;
  std::vector<double> read_attr_doubles(const std::string& name, const std::string& obj = "/") const;
  /// \brief The attribute's kind: string, integer or float (DType::string / i64 / f64), or other.
  DType attr_kind(const std::string& name, const std::string& obj = "/") const;
  /// \brief Any attribute as readable text ("42", "[1, 2, 3]", the string itself).
  std::string attr_text(const std::string& name, const std::string& obj = "/") const;

  // ---- datasets --------------------------------------------------------------------------
  /// \brief Creates a contiguous dataset (parents created); collective in a parallel file.
  template <class T>
  Dataset create_dataset(const std::string& name, const Shape& shape) {
    return create_dataset_raw(name, shape, dtype_of<T>());
  }
  Dataset create_dataset_raw(const std::string& name, const Shape& shape, DType type);
  Dataset open_dataset(const std::string& name) const;
  DatasetInfo dataset_info(const std::string& name) const;
  /// \brief Every dataset under `group`, recursively, in creation order where tracked.
  std::vector<DatasetInfo> list_datasets(const std::string& group = "/") const;

  /// Convenience: create + write / open + read a whole dataset.
  template <class T>
  void write_dataset(const std::string& name, const Shape& shape, const T* data) {
    create_dataset<T>(name, shape).write(data);
  }
  template <class T>
  void write_dataset(const std::string& name, const std::vector<T>& data) {
    write_dataset(name, Shape{static_cast<index_t>(data.size())}, data.data());
  }
  template <class T>
  std::vector<T> read_dataset(const std::string& name, Shape* shape = nullptr) const {
    const Dataset d = open_dataset(name);
    if (shape) *shape = d.shape();
    return d.read<T>();
  }

 private:
  File() = default;
  static Dataset make_dataset(Handle h, const std::filesystem::path& file, std::string path);
  Handle open_object(const std::string& obj) const;
  Handle open_attr(const std::string& name, const std::string& obj) const;
  void write_attr_raw(const std::string& name, const std::string& obj, hid_t file_type, hid_t mem_type,
                      const Shape* shape, const void* data);

  Handle h_;
  std::filesystem::path path_;
  bool parallel_ = false;
};

/// \brief Whether closing a file failed in this process (e.g. its last flush hit a full disk).
/// HDF5 1.10 keeps such a file half-closed and crashes when the library shuts down at
/// MPI_Finalize, so main ends the process without finalizing after such an error.
bool file_close_failed();

}  // namespace flowlm::io::h5
