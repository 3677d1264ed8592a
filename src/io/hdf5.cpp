#include "io/hdf5.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <system_error>

#include "core/error.hpp"
#include "flowlm/build_config.hpp"

namespace flowlm::io::h5 {
namespace fs = std::filesystem;

namespace {

std::string abs_path(const std::string& obj) {
  if (obj.empty() || obj == "/") return "/";
  std::string p = obj.front() == '/' ? obj : "/" + obj;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::vector<std::string> split_path(const std::string& obj) {
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (i < obj.size()) {
    const std::size_t j = std::min(obj.find('/', i), obj.size());
    if (j > i) parts.push_back(obj.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

std::string join_path(const std::string& group, const std::string& name) {
  return group == "/" ? "/" + name : group + "/" + name;
}

herr_t collect_attr(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}

herr_t collect_hard_link(hid_t, const char* name, const H5L_info_t* info, void* data) {
  if (info->type == H5L_TYPE_HARD) static_cast<std::vector<std::string>*>(data)->emplace_back(name);
  return 0;
}

herr_t collect_error(unsigned, const H5E_error2_t* e, void* data) {
  if (e->desc && *e->desc) static_cast<std::vector<std::string>*>(data)->emplace_back(e->desc);
  return 0;
}

hid_t mem_type(DType t) {
  switch (t) {
    case DType::f32:
      return H5T_NATIVE_FLOAT;
    case DType::f64:
      return H5T_NATIVE_DOUBLE;
    case DType::i8:
      return H5T_NATIVE_INT8;
    case DType::u8:
      return H5T_NATIVE_UINT8;
    case DType::i16:
      return H5T_NATIVE_INT16;
    case DType::u16:
      return H5T_NATIVE_UINT16;
    case DType::i32:
      return H5T_NATIVE_INT32;
    case DType::u32:
      return H5T_NATIVE_UINT32;
    case DType::i64:
      return H5T_NATIVE_INT64;
    case DType::u64:
      return H5T_NATIVE_UINT64;
    default:
      fail<IoError>("HDF5: no numeric memory type for {}", dtype_name(t));
  }
}

hid_t file_type(DType t) {
  switch (t) {
    case DType::f32:
      return H5T_IEEE_F32LE;
    case DType::f64:
      return H5T_IEEE_F64LE;
    case DType::i8:
      return H5T_STD_I8LE;
    case DType::u8:
      return H5T_STD_U8LE;
    case DType::i16:
      return H5T_STD_I16LE;
    case DType::u16:
      return H5T_STD_U16LE;
    case DType::i32:
      return H5T_STD_I32LE;
    case DType::u32:
      return H5T_STD_U32LE;
    case DType::i64:
      return H5T_STD_I64LE;
    case DType::u64:
      return H5T_STD_U64LE;
    default:
      fail<IoError>("HDF5: cannot store element type {}", dtype_name(t));
  }
}

DType classify(hid_t type) {
  const std::size_t size = H5Tget_size(type);
  switch (H5Tget_class(type)) {
    case H5T_FLOAT:
      return size == 4 ? DType::f32 : size == 8 ? DType::f64 : DType::other;
    case H5T_INTEGER: {
      const bool sgn = H5Tget_sign(type) == H5T_SGN_2;
      switch (size) {
        case 1:
          return sgn ? DType::i8 : DType::u8;
        case 2:
          return sgn ? DType::i16 : DType::u16;
        case 4:
          return sgn ? DType::i32 : DType::u32;
        case 8:
          return sgn ? DType::i64 : DType::u64;
        default:
          return DType::other;
      }
    }
    case H5T_STRING:
      return DType::string;
    default:
      return DType::other;
  }
}

Shape space_shape(hid_t space) {
  if (H5Sget_simple_extent_type(space) == H5S_NULL) return Shape{0};
  const int nd = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(static_cast<std::size_t>(std::max(nd, 0)));
  if (nd > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return Shape(dims.begin(), dims.end());
}

Handle make_space(const Shape& shape) {
  if (shape.empty()) return Handle(H5Screate(H5S_SCALAR), H5Sclose);
  const std::vector<hsize_t> dims(shape.begin(), shape.end());
  return Handle(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
}

Handle access_plist() {
  Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
#if H5_VERSION_GE(1, 10, 7)
  // Parallel file systems without flock() support must not make every open fail.
  H5Pset_file_locking(fapl.get(), 1, 1);
#endif
  return fapl;
}

Handle create_plist() {
  Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  H5Pset_link_creation_order(fcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  H5Pset_attr_creation_order(fcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
  return fcpl;
}

void check_readable(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail<IoError>("{}: no such file", path.string());
  if (fs::is_directory(path, ec)) fail<IoError>("{}: is a directory, expected an HDF5 file", path.string());
  const htri_t is = H5Fis_hdf5(path.c_str());
  if (is == 0)
    fail<IoError>("{}: not an HDF5 file (no HDF5 signature); expected a flowlm .h5 file", path.string());
  if (is < 0) fail<IoError>("{}: cannot read the file: {}", path.string(), error_stack_text());
}

void select_rows(hid_t file_space, const Shape& shape, index_t first, index_t count, Handle& mem_space,
                 const fs::path& file, const std::string& path) {
  if (shape.empty()) fail<IoError>("{}: dataset '{}' is a scalar and has no rows", file.string(), path);
  if (first < 0 || count < 0 || first + count > shape[0])
    fail<IoError>("{}: rows [{}, {}) out of range for dataset '{}' of shape {}", file.string(), first,
                  first + count, path, shape_str(shape));
  std::vector<hsize_t> start(shape.size(), 0), cnt(shape.begin(), shape.end());
  start[0] = static_cast<hsize_t>(first);
  cnt[0] = static_cast<hsize_t>(count);
  if (H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start.data(), nullptr, cnt.data(), nullptr) < 0)
    fail<IoError>("{}: cannot select rows of dataset '{}': {}", file.string(), path, error_stack_text());
  mem_space = Handle(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr), H5Sclose);
}

}  // namespace

void silence_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

std::string error_stack_text() {
  std::vector<std::string> msgs;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &msgs);  // innermost (the cause) first
  H5Eclear2(H5E_DEFAULT);
  if (msgs.empty()) return "unknown HDF5 error";
  if (msgs.size() > 2) msgs.resize(2);
  return fmt::format("{}", fmt::join(msgs, "; "));
}

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    close_ = o.close_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

namespace {
std::atomic<bool> g_file_close_failed{false};
}  // namespace

herr_t Handle::close() {
  herr_t rc = 0;
  if (id_ >= 0 && close_) rc = close_(id_);
  if (rc < 0 && close_ == &H5Fclose) g_file_close_failed = true;
  id_ = H5I_INVALID_HID;
  return rc;
}

bool file_close_failed() { return g_file_close_failed; }

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "float32";
    case DType::f64:
      return "float64";
    case DType::i8:
      return "int8";
    case DType::u8:
      return "uint8";
    case DType::i16:
      return "int16";
    case DType::u16:
      return "uint16";
    case DType::i32:
      return "int32";
    case DType::u32:
      return "uint32";
    case DType::i64:
      return "int64";
    case DType::u64:
      return "uint64";
    case DType::string:
      return "string";
    default:
      return "other";
  }
}

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::i8:
    case DType::u8:
      return 1;
    case DType::i16:
    case DType::u16:
      return 2;
    case DType::f32:
    case DType::i32:
    case DType::u32:
      return 4;
    case DType::f64:
    case DType::i64:
    case DType::u64:
      return 8;
    default:
      return 0;
  }
}

// ---- Dataset ------------------------------------------------------------------------------

void Dataset::write_raw(DType mem, const void* data, index_t first, index_t count) {
  Handle file_space, mem_space;
  if (first >= 0 || count > 0) {
    file_space = Handle(H5Dget_space(h_.get()), H5Sclose);
    select_rows(file_space.get(), shape_, first, count, mem_space, file_, path_);
    if (count == 0) return;
  } else if (numel() == 0) {
    return;
  }
  const hid_t fsp = file_space.valid() ? file_space.get() : H5S_ALL;
  const hid_t msp = mem_space.valid() ? mem_space.get() : H5S_ALL;
  if (!data) fail<IoError>("{}: writing dataset '{}': no data (null pointer)", file_.string(), path_);
  if (H5Dwrite(h_.get(), mem_type(mem), msp, fsp, H5P_DEFAULT, data) < 0)
    fail<IoError>("{}: writing dataset '{}' failed: {}", file_.string(), path_, error_stack_text());
}

void Dataset::read_raw(DType mem, void* out, index_t first, index_t count) const {
  Handle file_space, mem_space;
  if (first >= 0 || count > 0) {
    file_space = Handle(H5Dget_space(h_.get()), H5Sclose);
    select_rows(file_space.get(), shape_, first, count, mem_space, file_, path_);
    if (count == 0) return;
  } else if (numel() == 0) {
    return;
  }
  if (!dtype_is_float(dtype_) && !dtype_is_int(dtype_))
    fail<IoError>("{}: dataset '{}' holds {} data, not numbers", file_.string(), path_, dtype_name(dtype_));
  const hid_t fsp = file_space.valid() ? file_space.get() : H5S_ALL;
  const hid_t msp = mem_space.valid() ? mem_space.get() : H5S_ALL;
  if (H5Dread(h_.get(), mem_type(mem), msp, fsp, H5P_DEFAULT, out) < 0)
    fail<IoError>("{}: reading dataset '{}' failed (corrupt or truncated file?): {}", file_.string(), path_,
                  error_stack_text());
}

// ---- File ---------------------------------------------------------------------------------

File File::open(const fs::path& path) {
  silence_errors();
  check_readable(path);
  const Handle fapl = access_plist();
  File f;
  f.path_ = path;
  f.h_ = Handle(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  if (!f.h_.valid())
    fail<IoError>("{}: HDF5 cannot open the file (truncated or corrupt?): {}", path.string(),
                  error_stack_text());
  return f;
}

File File::open_rw(const fs::path& path) {
  silence_errors();
  check_readable(path);
  const Handle fapl = access_plist();
  File f;
  f.path_ = path;
  f.h_ = Handle(H5Fopen(path.c_str(), H5F_ACC_RDWR, fapl.get()), H5Fclose);
  if (!f.h_.valid())
    fail<IoError>("{}: HDF5 cannot open the file for writing: {}", path.string(), error_stack_text());
  return f;
}

File File::create(const fs::path& path) {
  silence_errors();
  const Handle fapl = access_plist();
  const Handle fcpl = create_plist();
  File f;
  f.path_ = path;
  f.h_ = Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), H5Fclose);
  if (!f.h_.valid())
    fail<IoError>("{}: cannot create HDF5 file (does the directory exist and is it writable?): {}",
                  path.string(), error_stack_text());
  return f;
}

File File::create_parallel(const fs::path& path, const comm::Communicator& comm) {
  silence_errors();
#if FLOWLM_HDF5_PARALLEL && defined(H5_HAVE_PARALLEL)
  const Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  if (H5Pset_fapl_mpio(fapl.get(), comm.native(), MPI_INFO_NULL) < 0)
    fail<IoError>("{}: cannot set up the MPI-IO driver: {}", path.string(), error_stack_text());
  const Handle fcpl = create_plist();
  File f;
  f.path_ = path;
  f.parallel_ = true;
  f.h_ = Handle(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), fapl.get()), H5Fclose);
  if (!f.h_.valid())
    fail<IoError>("{}: cannot create HDF5 file with MPI-IO (does the directory exist on every node?): {}",
                  path.string(), error_stack_text());
  return f;
#else
  (void)comm;
  fail<IoError>("{}: this flowlm was built with a serial HDF5; parallel file creation is unavailable",
                path.string());
#endif
}

void File::close() {
  if (!h_.valid()) return;
  if (h_.close() < 0) fail<IoError>("{}: closing the file failed: {}", path_.string(), error_stack_text());
}

bool File::exists(const std::string& obj) const {
  std::string cum;
  for (const auto& part : split_path(obj)) {
    cum += "/" + part;
    if (H5Lexists(h_.get(), cum.c_str(), H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
  }
  return true;
}

bool File::is_dataset(const std::string& obj) const {
  if (!exists(obj)) return false;
  const Handle o(H5Oopen(h_.get(), abs_path(obj).c_str(), H5P_DEFAULT), H5Oclose);
  return o.valid() && H5Iget_type(o.get()) == H5I_DATASET;
}

bool File::is_group(const std::string& obj) const {
  if (!exists(obj)) return false;
  const Handle o(H5Oopen(h_.get(), abs_path(obj).c_str(), H5P_DEFAULT), H5Oclose);
  return o.valid() && H5Iget_type(o.get()) == H5I_GROUP;
}

void File::create_group(const std::string& group) {
  std::string cum;
  for (const auto& part : split_path(group)) {
    cum += "/" + part;
    if (H5Lexists(h_.get(), cum.c_str(), H5P_DEFAULT) > 0) {
      if (!is_group(cum))
        fail<IoError>("{}: cannot create group '{}': '{}' exists and is not a group", path_.string(), group,
                      cum);
      continue;
    }
    const Handle gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
    H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    const Handle g(H5Gcreate2(h_.get(), cum.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
    if (!g.valid())
      fail<IoError>("{}: cannot create group '{}': {}", path_.string(), cum, error_stack_text());
  }
}

Handle File::open_object(const std::string& obj) const {
  const std::string p = abs_path(obj);
  if (!exists(p)) fail<IoError>("{}: no object '{}' in the file", path_.string(), p);
  Handle o(H5Oopen(h_.get(), p.c_str(), H5P_DEFAULT), H5Oclose);
  if (!o.valid()) fail<IoError>("{}: cannot open '{}': {}", path_.string(), p, error_stack_text());
  return o;
}

Handle File::open_attr(const std::string& name, const std::string& obj) const {
  const Handle o = open_object(obj);
  if (H5Aexists(o.get(), name.c_str()) <= 0)
    fail<IoError>("{}: '{}' has no attribute '{}'", path_.string(), abs_path(obj), name);
  Handle a(H5Aopen(o.get(), name.c_str(), H5P_DEFAULT), H5Aclose);
  if (!a.valid())
    fail<IoError>("{}: cannot open attribute '{}' of '{}': {}", path_.string(), name, abs_path(obj),
                  error_stack_text());
  return a;
}

std::vector<std::string> File::attr_names(const std::string& obj) const {
  const Handle o = open_object(obj);
  std::vector<std::string> names;
  hsize_t idx = 0;
  // Creation order where the file tracks it (ours do), names otherwise (foreign files).
  if (H5Aiterate2(o.get(), H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, collect_attr, &names) < 0) {
    H5Eclear2(H5E_DEFAULT);
    names.clear();
    idx = 0;
    if (H5Aiterate2(o.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &names) < 0)
      fail<IoError>("{}: cannot list attributes of '{}': {}", path_.string(), abs_path(obj),
                    error_stack_text());
  }
  return names;
}

bool File::has_attr(const std::string& name, const std::string& obj) const {
  if (!exists(obj)) return false;
  const Handle o = open_object(obj);
  const htri_t r = H5Aexists(o.get(), name.c_str());
  if (r < 0) H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

void File::write_attr_raw(const std::string& name, const std::string& obj, hid_t ftype, hid_t mtype,
                          const Shape* shape, const void* data) {
  const Handle o = open_object(obj);
  if (H5Aexists(o.get(), name.c_str()) > 0 && H5Adelete(o.get(), name.c_str()) < 0)
    fail<IoError>("{}: cannot replace attribute '{}': {}", path_.string(), name, error_stack_text());
  const bool empty = shape && shape_numel(*shape) == 0;
  const Handle space = empty ? Handle(H5Screate(H5S_NULL), H5Sclose) : make_space(shape ? *shape : Shape{});
  const Handle a(H5Acreate2(o.get(), name.c_str(), ftype, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.valid() || (!empty && H5Awrite(a.get(), mtype, data) < 0))
    fail<IoError>("{}: cannot write attribute '{}' of '{}': {}", path_.string(), name, abs_path(obj),
                  error_stack_text());
}

void File::write_attr(const std::string& name, const std::string& value, const std::string& obj) {
  const Handle t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  const char* p = value.c_str();
  write_attr_raw(name, obj, t.get(), t.get(), nullptr, &p);
}

void File::write_attr(const std::string& name, std::int64_t value, const std::string& obj) {
  write_attr_raw(name, obj, H5T_STD_I64LE, H5T_NATIVE_INT64, nullptr, &value);
}

void File::write_attr(const std::string& name, double value, const std::string& obj) {
  write_attr_raw(name, obj, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, nullptr, &value);
}

void File::write_attr(const std::string& name, const std::vector<std::int64_t>& value,
                      const std::string& obj) {
  const Shape s{static_cast<index_t>(value.size())};
  write_attr_raw(name, obj, H5T_STD_I64LE, H5T_NATIVE_INT64, &s, value.data());
}

void File::write_attr(const std::string& name, const std::vector<double>& value, const std::string& obj) {
  const Shape s{static_cast<index_t>(value.size())};
  write_attr_raw(name, obj, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &s, value.data());
}

DType File::attr_kind(const std::string& name, const std::string& obj) const {
  const Handle a = open_attr(name, obj);
  const Handle t(H5Aget_type(a.get()), H5Tclose);
  switch (H5Tget_class(t.get())) {
    case H5T_STRING:
      return DType::string;
    case H5T_INTEGER:
      return DType::i64;
    case H5T_FLOAT:
      return DType::f64;
    default:
      return DType::other;
  }
}

std::string File::read_attr_string(const std::string& name, const std::string& obj) const {
  const Handle a = open_attr(name, obj);
  const Handle t(H5Aget_type(a.get()), H5Tclose);
  if (H5Tget_class(t.get()) != H5T_STRING)
    fail<IoError>("{}: attribute '{}' of '{}' is not a string", path_.string(), name, abs_path(obj));
  const Handle space(H5Aget_space(a.get()), H5Sclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n == 0) return "";
  if (n != 1)
    fail<IoError>("{}: attribute '{}' of '{}' holds {} strings, expected one", path_.string(), name,
                  abs_path(obj), n);
  std::string out;
  if (H5Tis_variable_str(t.get()) > 0) {
    const Handle mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt.get(), H5T_VARIABLE);
    H5Tset_cset(mt.get(), H5Tget_cset(t.get()));
    char* p = nullptr;
    if (H5Aread(a.get(), mt.get(), &p) < 0)
      fail<IoError>("{}: cannot read attribute '{}': {}", path_.string(), name, error_stack_text());
    if (p) out = p;
    H5free_memory(p);
  } else {
    std::vector<char> buf(H5Tget_size(t.get()) + 1, '\0');
    if (H5Aread(a.get(), t.get(), buf.data()) < 0)
      fail<IoError>("{}: cannot read attribute '{}': {}", path_.string(), name, error_stack_text());
    out.assign(buf.data(), strnlen(buf.data(), buf.size()));
    while (!out.empty() && out.back() == ' ') out.pop_back();  // space-padded strings
  }
  return out;
}

std::vector<std::int64_t> File::read_attr_ints(const std::string& name, const std::string& obj) const {
  const Handle a = open_attr(name, obj);
  const Handle t(H5Aget_type(a.get()), H5Tclose);
  if (H5Tget_class(t.get()) != H5T_INTEGER)
    fail<IoError>("{}: attribute '{}' of '{}' is not an integer", path_.string(), name, abs_path(obj));
  const Handle space(H5Aget_space(a.get()), H5Sclose);
  std::vector<std::int64_t> v(
      static_cast<std::size_t>(std::max<hssize_t>(H5Sget_simple_extent_npoints(space.get()), 0)));
  if (!v.empty() && H5Aread(a.get(), H5T_NATIVE_INT64, v.data()) < 0)
    fail<IoError>("{}: cannot read attribute '{}': {}", path_.string(), name, error_stack_text());
  return v;
}

std::vector<double> File::read_attr_doubles(const std::string& name, const std::string& obj) const {
  const Handle a = open_attr(name, obj);
  const Handle t(H5Aget_type(a.get()), H5Tclose);
  const auto cls = H5Tget_class(t.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    fail<IoError>("{}: attribute '{}' of '{}' is not a number", path_.string(), name, abs_path(obj));
  const Handle space(H5Aget_space(a.get()), H5Sclose);
  std::vector<double> v(
      static_cast<std::size_t>(std::max<hssize_t>(H5Sget_simple_extent_npoints(space.get()), 0)));
  if (!v.empty() && H5Aread(a.get(), H5T_NATIVE_DOUBLE, v.data()) < 0)
    fail<IoError>("{}: cannot read attribute '{}': {}", path_.string(), name, error_stack_text());
  return v;
}

std::int64_t File::read_attr_int(const std::string& name, const std::string& obj) const {
  const auto v = read_attr_ints(name, obj);
  if (v.size() != 1)
    fail<IoError>("{}: attribute '{}' of '{}' holds {} values, expected one", path_.string(), name,
                  abs_path(obj), v.size());
  return v[0];
}

double File::read_attr_double(const std::string& name, const std::string& obj) const {
  const auto v = read_attr_doubles(name, obj);
  if (v.size() != 1)
    fail<IoError>("{}: attribute '{}' of '{}' holds {} values, expected one", path_.string(), name,
                  abs_path(obj), v.size());
  return v[0];
}

std::string File::attr_text(const std::string& name, const std::string& obj) const {
  constexpr std::size_t kMaxItems = 16;
  const auto list = [&](const auto& v) {
    if (v.size() == 1) return fmt::format("{}", v[0]);
    if (v.size() <= kMaxItems) return fmt::format("[{}]", fmt::join(v, ", "));
    return fmt::format("[{}, ... ({} values)]", fmt::join(v.begin(), v.begin() + kMaxItems, ", "), v.size());
  };
  switch (attr_kind(name, obj)) {
    case DType::string: {
      const Handle a = open_attr(name, obj);
      const Handle space(H5Aget_space(a.get()), H5Sclose);
      const hssize_t n = H5Sget_simple_extent_npoints(space.get());
      if (n > 1) return fmt::format("<{} strings>", n);
      return read_attr_string(name, obj);
    }
    case DType::i64:
      return list(read_attr_ints(name, obj));
    case DType::f64:
      return list(read_attr_doubles(name, obj));
    default:
      return "<non-numeric, non-string attribute>";
  }
}

Dataset File::make_dataset(Handle h, const fs::path& file, std::string path) {
  Dataset d;
  const Handle t(H5Dget_type(h.get()), H5Tclose);
  const Handle s(H5Dget_space(h.get()), H5Sclose);
  d.dtype_ = classify(t.get());
  d.shape_ = space_shape(s.get());
  d.h_ = std::move(h);
  d.file_ = file;
  d.path_ = std::move(path);
  return d;
}

Dataset File::create_dataset_raw(const std::string& name, const Shape& shape, DType type) {
  const std::string p = abs_path(name);
  if (p == "/") fail<IoError>("{}: empty dataset name", path_.string());
  for (const index_t d : shape)
    if (d < 0)
      fail<IoError>("{}: dataset '{}': negative dimension in shape {}", path_.string(), p, shape_str(shape));
  const std::string parent = p.substr(0, p.rfind('/'));
  if (!parent.empty()) create_group(parent);
  const Handle space = make_space(shape);
  const Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER);  // every element is written; skip the fill pass
  Handle h(
      H5Dcreate2(h_.get(), p.c_str(), file_type(type), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
      H5Dclose);
  if (!h.valid())
    fail<IoError>("{}: cannot create dataset '{}' ({} {}): {}", path_.string(), p, dtype_name(type),
                  shape_str(shape), error_stack_text());
  return make_dataset(std::move(h), path_, p);
}

Dataset File::open_dataset(const std::string& name) const {
  const std::string p = abs_path(name);
  if (!is_dataset(p)) fail<IoError>("{}: no dataset '{}' in the file", path_.string(), p);
  Handle h(H5Dopen2(h_.get(), p.c_str(), H5P_DEFAULT), H5Dclose);
  if (!h.valid()) fail<IoError>("{}: cannot open dataset '{}': {}", path_.string(), p, error_stack_text());
  return make_dataset(std::move(h), path_, p);
}

DatasetInfo File::dataset_info(const std::string& name) const {
  const Dataset d = open_dataset(name);
  return DatasetInfo{d.path(), d.dtype(), d.shape()};
}

std::vector<DatasetInfo> File::list_datasets(const std::string& group) const {
  std::vector<DatasetInfo> out;
  const auto visit = [&](const auto& self, const std::string& gpath, int depth) -> void {
    if (depth > 64) fail<IoError>("{}: groups nested too deeply (a cycle?) at '{}'", path_.string(), gpath);
    const Handle g(H5Gopen2(h_.get(), gpath.c_str(), H5P_DEFAULT), H5Gclose);
    if (!g.valid())
      fail<IoError>("{}: cannot open group '{}': {}", path_.string(), gpath, error_stack_text());
    std::vector<std::string> names;
    hsize_t idx = 0;
    if (H5Literate(g.get(), H5_INDEX_CRT_ORDER, H5_ITER_INC, &idx, collect_hard_link, &names) < 0) {
      H5Eclear2(H5E_DEFAULT);
      names.clear();
      idx = 0;
      if (H5Literate(g.get(), H5_INDEX_NAME, H5_ITER_INC, &idx, collect_hard_link, &names) < 0)
        fail<IoError>("{}: cannot list group '{}': {}", path_.string(), gpath, error_stack_text());
    }
    for (const auto& n : names) {
      const std::string child = join_path(gpath, n);
      Handle o(H5Oopen(g.get(), n.c_str(), H5P_DEFAULT), H5Oclose);
      if (!o.valid()) fail<IoError>("{}: cannot open '{}': {}", path_.string(), child, error_stack_text());
      const H5I_type_t type = H5Iget_type(o.get());
      if (type == H5I_GROUP) {
        o.reset();
        self(self, child, depth + 1);
      } else if (type == H5I_DATASET) {
        const Dataset d = make_dataset(std::move(o), path_, child);
        out.push_back(DatasetInfo{d.path(), d.dtype(), d.shape()});
      }
    }
  };
  const std::string g = abs_path(group);
  if (!is_group(g)) fail<IoError>("{}: no group '{}' in the file", path_.string(), g);
  visit(visit, g, 0);
  return out;
}

}  // namespace flowlm::io::h5
