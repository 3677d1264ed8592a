#include "io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <system_error>

#include "core/error.hpp"
#include "io/json_text.hpp"

namespace flowlm::io {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::uint64_t kMaxHeader = 100ull << 20;  // the reference implementation's limit

/// Bytes per element of every dtype the format defines; 0 for an unknown name.
std::size_t element_size(const std::string& dtype) {
  static const std::map<std::string, std::size_t> sizes{
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8},  {"I32", 4},     {"I16", 2},    {"I8", 1},
      {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},   {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

bool is_le() {
  const std::uint16_t one = 1;
  unsigned char b;
  std::memcpy(&b, &one, 1);
  return b == 1;
}

}  // namespace

std::uint16_t f32_to_bf16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>((u + rounding) >> 16);
}

float bf16_to_f32(std::uint16_t x) {
  const std::uint32_t u = static_cast<std::uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t mant = h & 0x3ffu;
  std::uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);  // Inf / NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    u = sign;  // +-0
  } else {
    // Subnormal: normalise the mantissa.
    exp = 113;
    while ((mant & 0x400u) == 0) {
      mant <<= 1;
      --exp;
    }
    u = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// ---- reading --------------------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path) {
  if (!is_le()) fail<IoError>("{}: safetensors is little-endian and this machine is not", path.string());
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail<IoError>("{}: cannot open: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int e = errno;
    ::close(fd_);
    fail<IoError>("{}: cannot stat: {}", path.string(), std::strerror(e));
  }
  size_ = static_cast<std::size_t>(st.st_size);
  auto bad = [&](const std::string& what) {
    if (map_) ::munmap(const_cast<unsigned char*>(map_), size_);
    ::close(fd_);
    map_ = nullptr;
    fd_ = -1;
    fail<IoError>("{}: not a valid safetensors file: {}", path.string(), what);
  };
  if (size_ < 8) bad(fmt::format("{} bytes, shorter than the 8-byte header length", size_));
  void* m = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
  if (m == MAP_FAILED) bad(fmt::format("cannot map it: {}", std::strerror(errno)));
  map_ = static_cast<const unsigned char*>(m);

  std::uint64_t n = 0;
  std::memcpy(&n, map_, 8);
  if (n > kMaxHeader)
    bad(fmt::format("header length {} exceeds the format's limit of {} bytes", n, kMaxHeader));
  if (n > size_ - 8) bad(fmt::format("header length {} runs past the end of the {}-byte file", n, size_));
  data_start_ = 8 + static_cast<std::size_t>(n);
  const std::string text(reinterpret_cast<const char*>(map_) + 8, static_cast<std::size_t>(n));
  const json header = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) bad("the header is not valid JSON");
  if (!header.is_object()) bad("the header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) bad("__metadata__ is not an object of strings");
      for (auto m2 = v.begin(); m2 != v.end(); ++m2) {
        if (!m2.value().is_string()) bad(fmt::format("__metadata__.{} is not a string", m2.key()));
        metadata_[m2.key()] = m2.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object()) bad(fmt::format("tensor '{}': entry is not an object", name));
    SafetensorsEntry e;
    e.name = name;
    if (!v.contains("dtype") || !v["dtype"].is_string())
      bad(fmt::format("tensor '{}': no dtype string", name));
    e.dtype = v["dtype"].get<std::string>();
    const std::size_t esize = element_size(e.dtype);
    if (esize == 0) bad(fmt::format("tensor '{}': unknown dtype '{}'", name, e.dtype));
    if (!v.contains("shape") || !v["shape"].is_array()) bad(fmt::format("tensor '{}': no shape array", name));
    // numel as shape_numel() forms it: the running product in int64, which must not overflow.
    std::uint64_t numel = 1;
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<index_t>::max());
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned())
        bad(fmt::format("tensor '{}': shape {} has a non-integer or negative dimension", name,
                        json_brief(v["shape"])));
      const auto dim = d.get<std::uint64_t>();
      if (dim > kMax || (dim != 0 && numel > kMax / dim))
        bad(fmt::format("tensor '{}': shape {} overflows", name, json_brief(v["shape"])));
      numel *= dim;
      e.shape.push_back(static_cast<index_t>(dim));
    }
    const json& off = v.contains("data_offsets") ? v["data_offsets"] : json();
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad(fmt::format("tensor '{}': data_offsets is not a pair of non-negative integers", name));
    e.begin = off[0].get<std::uint64_t>();
    e.end = off[1].get<std::uint64_t>();
    if (e.end < e.begin)
      bad(fmt::format("tensor '{}': data_offsets [{}, {}] end before they begin", name, e.begin, e.end));
    if (numel > std::numeric_limits<std::uint64_t>::max() / esize || e.end - e.begin != numel * esize)
      bad(fmt::format("tensor '{}': data_offsets [{}, {}] hold {} bytes, but {} {} of {} bytes need {}", name,
                      e.begin, e.end, e.end - e.begin, shape_str(e.shape), e.dtype, esize, numel * esize));
    entries_.push_back(std::move(e));
  }
  std::sort(entries_.begin(), entries_.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const std::uint64_t data_size = size_ - data_start_;
  std::uint64_t at = 0;
  for (const auto& e : entries_) {
    if (e.begin != at)
      bad(fmt::format(
          "tensor '{}' starts at byte {} of the data, expected {}: the tensors {} (offsets must be "
          "contiguous)",
          e.name, e.begin, at, e.begin > at ? "leave a gap" : "overlap"));
    at = e.end;
  }
  if (at != data_size)
    bad(fmt::format("the tensors end at byte {} of the data, but the data section has {} bytes", at,
                    data_size));
  for (std::size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(const_cast<unsigned char*>(map_), size_);
  if (fd_ >= 0) ::close(fd_);
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

void SafetensorsFile::read_f32(const std::string& name, const Shape& expected, float* out) const {
  const SafetensorsEntry* e = find(name);
  if (!e) fail<IoError>("{}: no tensor '{}'", path_.string(), name);
  if (e->shape != expected)
    fail<IoError>("{}: tensor '{}' has shape {}, expected {}", path_.string(), name, shape_str(e->shape),
                  shape_str(expected));
  const unsigned char* src = map_ + data_start_ + e->begin;
  const auto n = static_cast<std::size_t>(shape_numel(e->shape));
  if (n == 0) return;  // an empty tensor: `out` may be null (memcpy must not see it)
  if (e->dtype == "F32") {
    std::memcpy(out, src, n * sizeof(float));
  } else if (e->dtype == "BF16" || e->dtype == "F16") {
    const bool bf = e->dtype == "BF16";
    for (std::size_t i = 0; i < n; ++i) {
      std::uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      out[i] = bf ? bf16_to_f32(h) : f16_to_f32(h);
    }
  } else {
    fail<IoError>("{}: tensor '{}' is {}; flowlm reads F32, F16 and BF16 weights", path_.string(), name,
                  e->dtype);
  }
}

SafetensorsModel::SafetensorsModel(const fs::path& where) : where_(where) {
  if (fs::is_regular_file(where)) {
    shard_names_ = {where.filename().string()};
    where_ = where.parent_path();
  } else if (fs::is_regular_file(where / "model.safetensors")) {
    shard_names_ = {"model.safetensors"};
  } else if (fs::is_regular_file(where / "model.safetensors.index.json")) {
    const fs::path index = where / "model.safetensors.index.json";
    std::ifstream in(index);
    const json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail<IoError>("{}: not a valid safetensors index (no weight_map object)", index.string());
    std::set<std::string> seen;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        fail<IoError>("{}: weight_map['{}'] is not a file name", index.string(), it.key());
      const std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file == "..")
        fail<IoError>("{}: weight_map['{}'] = '{}' is not a file of this directory", index.string(), it.key(),
                      file);
      weight_map_[it.key()] = file;
      if (seen.insert(file).second) shard_names_.push_back(file);
    }
    std::sort(shard_names_.begin(), shard_names_.end());
  } else if (fs::is_directory(where)) {
    fail<IoError>(
        "{}: no model.safetensors or model.safetensors.index.json (flowlm imports safetensors weights; "
        "convert pytorch_model.bin with transformers' save_pretrained(safe_serialization=True))",
        where.string());
  } else {
    fail<IoError>("{}: no such file or directory", where.string());
  }
  if (weight_map_.empty()) {
    const SafetensorsFile& f = shard(shard_names_.front());
    for (const auto& e : f.tensors()) weight_map_[e.name] = shard_names_.front();
  } else {
    // Every shard opens and holds exactly the tensors the index gives it.
    for (const auto& s : shard_names_) {
      const SafetensorsFile& f = shard(s);
      for (const auto& e : f.tensors()) {
        const auto it = weight_map_.find(e.name);
        if (it == weight_map_.end() || it->second != s)
          fail<IoError>("{}: holds tensor '{}', which the index does not map to it", f.path().string(),
                        e.name);
      }
    }
    for (const auto& [name, file] : weight_map_)
      if (!shard(file).find(name))
        fail<IoError>("{}: the index maps tensor '{}' to this file, which lacks it", (where_ / file).string(),
                      name);
  }
}

SafetensorsModel::~SafetensorsModel() = default;

const SafetensorsFile& SafetensorsModel::shard(const std::string& file) const {
  auto& slot = open_[file];
  if (!slot) slot = std::make_unique<SafetensorsFile>(where_ / file);
  return *slot;
}

std::vector<SafetensorsEntry> SafetensorsModel::tensors() const {
  std::vector<SafetensorsEntry> all;
  for (const auto& s : shard_names_)
    for (const auto& e : shard(s).tensors()) all.push_back(e);
  return all;
}

bool SafetensorsModel::has(const std::string& name) const { return weight_map_.count(name) != 0; }

void SafetensorsModel::read_f32(const std::string& name, const Shape& expected, float* out) const {
  const auto it = weight_map_.find(name);
  if (it == weight_map_.end()) fail<IoError>("{}: the model has no tensor '{}'", where_.string(), name);
  shard(it->second).read_f32(name, expected, out);
}

std::vector<fs::path> SafetensorsModel::files() const {
  std::vector<fs::path> out;
  for (const auto& s : shard_names_) out.push_back(where_ / s);
  return out;
}

// ---- writing --------------------------------------------------------------------------------

const char* safetensors_dtype_name(SafetensorsDType dtype) {
  return dtype == SafetensorsDType::bf16 ? "BF16" : "F32";
}

SafetensorsDType parse_safetensors_dtype(const std::string& text) {
  if (text == "f32" || text == "float32") return SafetensorsDType::f32;
  if (text == "bf16" || text == "bfloat16") return SafetensorsDType::bf16;
  fail<UsageError>("--dtype '{}': choose f32 or bf16", text);
}

namespace {

std::size_t out_size(SafetensorsDType dtype) { return dtype == SafetensorsDType::bf16 ? 2 : 4; }

/// Writes to `<path>.tmp`, fsyncs, renames; removes the tmp file on any failure.
class AtomicFile {
 public:
  explicit AtomicFile(fs::path path) : path_(std::move(path)), tmp_(path_.string() + ".tmp") {
    f_ = std::fopen(tmp_.c_str(), "wb");
    if (!f_) fail<IoError>("{}: cannot create: {}", tmp_.string(), std::strerror(errno));
  }
  ~AtomicFile() {
    if (f_) {
      std::fclose(f_);
      std::error_code ec;
      fs::remove(tmp_, ec);
    }
  }
  void write(const void* data, std::size_t bytes) {
    if (bytes && std::fwrite(data, 1, bytes, f_) != bytes)
      fail<IoError>("{}: write failed: {}", tmp_.string(), std::strerror(errno));
  }
  void commit() {
    const bool ok = std::fflush(f_) == 0 && ::fsync(fileno(f_)) == 0;
    const int e = errno;
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    std::error_code ec;
    if (!ok || !closed) {
      fs::remove(tmp_, ec);
      fail<IoError>("{}: cannot flush: {}", tmp_.string(), std::strerror(e));
    }
    fs::rename(tmp_, path_, ec);
    if (ec) {
      fs::remove(tmp_, ec);
      fail<IoError>("{}: cannot rename into place: {}", path_.string(), ec.message());
    }
  }

 private:
  fs::path path_, tmp_;
  std::FILE* f_ = nullptr;
};

}  // namespace

void write_safetensors(const fs::path& path, const std::vector<SafetensorsOut>& tensors,
                       SafetensorsDType dtype, const SafetensorsProducer& produce,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  std::uint64_t at = 0;
  const std::size_t es = out_size(dtype);
  for (const auto& t : tensors) {
    if (t.name == "__metadata__" || header.contains(t.name))
      fail<IoError>("{}: tensor name '{}' is reserved or repeated", path.string(), t.name);
    const std::uint64_t bytes = static_cast<std::uint64_t>(shape_numel(t.shape)) * es;
    header[t.name] = {
        {"dtype", safetensors_dtype_name(dtype)}, {"shape", t.shape}, {"data_offsets", {at, at + bytes}}};
    at += bytes;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const std::uint64_t n = text.size();

  AtomicFile out(path);
  out.write(&n, 8);
  out.write(text.data(), text.size());
  std::vector<float> buf;
  std::vector<std::uint16_t> half;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    buf.assign(static_cast<std::size_t>(shape_numel(tensors[i].shape)),
               std::numeric_limits<float>::quiet_NaN());
    produce(i, buf.data());
    if (dtype == SafetensorsDType::f32) {
      out.write(buf.data(), buf.size() * sizeof(float));
    } else {
      half.resize(buf.size());
      std::transform(buf.begin(), buf.end(), half.begin(), f32_to_bf16);
      out.write(half.data(), half.size() * sizeof(std::uint16_t));
    }
  }
  out.commit();
}

std::vector<fs::path> write_safetensors_model(const fs::path& dir, const std::vector<SafetensorsOut>& tensors,
                                              SafetensorsDType dtype, const SafetensorsProducer& produce,
                                              std::int64_t max_shard_bytes,
                                              const std::map<std::string, std::string>& metadata) {
  fs::create_directories(dir);
  const std::size_t es = out_size(dtype);
  // Consecutive tensors fill a shard up to the limit; a tensor larger than the limit gets its own.
  std::vector<std::vector<std::size_t>> shards(1);
  std::uint64_t in_shard = 0, total = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::uint64_t bytes = static_cast<std::uint64_t>(shape_numel(tensors[i].shape)) * es;
    if (max_shard_bytes > 0 && !shards.back().empty() &&
        in_shard + bytes > static_cast<std::uint64_t>(max_shard_bytes)) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(i);
    in_shard += bytes;
    total += bytes;
  }
  std::vector<fs::path> written;
  std::map<std::string, std::string> weight_map;
  for (std::size_t s = 0; s < shards.size(); ++s) {
    const std::string name = shards.size() == 1
                                 ? "model.safetensors"
                                 : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
    std::vector<SafetensorsOut> part;
    for (const std::size_t i : shards[s]) {
      part.push_back(tensors[i]);
      weight_map[tensors[i].name] = name;
    }
    const auto& ids = shards[s];
    write_safetensors(
        dir / name, part, dtype, [&](std::size_t k, float* out) { produce(ids[k], out); }, metadata);
    written.push_back(dir / name);
  }
  if (shards.size() > 1) {
    const json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    AtomicFile out(dir / "model.safetensors.index.json");
    const std::string text = index.dump(2) + "\n";
    out.write(text.data(), text.size());
    out.commit();
    written.push_back(dir / "model.safetensors.index.json");
  }
  // Weights of an earlier export in another layout would shadow these (transformers prefers
  // model.safetensors over an index): remove them.
  std::set<fs::path> keep(written.begin(), written.end());
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string f = entry.path().filename().string();
    const bool ours = f == "model.safetensors" || f == "model.safetensors.index.json" ||
                      (f.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors");
    if (ours && !keep.count(entry.path())) fs::remove(entry.path());
  }
  return written;
}

}  // namespace flowlm::io
