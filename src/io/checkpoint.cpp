#include "io/checkpoint.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <regex>
#include <set>
#include <system_error>
#include <type_traits>

#include "core/error.hpp"
#include "core/log.hpp"
#include "flowlm/build_config.hpp"

namespace flowlm::io {
namespace fs = std::filesystem;

namespace {

const char* const kRequiredAttrs[] = {"format_version", "step",        "tokens_seen", "config_toml",
                                      "rng_state",      "data_cursor", "world_size",  "created_by"};

bool is_required_attr(const std::string& name) {
  return std::find_if(std::begin(kRequiredAttrs), std::end(kRequiredAttrs),
                      [&](const char* a) { return name == a; }) != std::end(kRequiredAttrs);
}

/// Every rank learns whether any rank failed; all then throw the message of the lowest failing rank.
std::optional<std::string> agree_on_error(const comm::Communicator& world, const std::string& local) {
  const auto flags = world.allgather(std::int64_t{local.empty() ? 0 : 1});
  const auto it = std::find(flags.begin(), flags.end(), std::int64_t{1});
  if (it == flags.end()) return std::nullopt;
  std::string msg = local;
  world.broadcast(msg, static_cast<int>(it - flags.begin()));
  return msg;
}

void throw_if_any(const comm::Communicator& world, const std::string& local) {
  if (auto msg = agree_on_error(world, local)) throw IoError(*msg);
}

std::uint64_t fnv1a(std::uint64_t h, const void* p, std::size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

/// Local checks of one group's tensors; returns the first problem or "".
std::string check_tensors(const fs::path& path, const char* group, const std::vector<TensorRef>& ts,
                          const comm::Communicator& world, std::uint64_t& hash, bool streamed) {
  std::set<std::string> seen;
  for (const auto& t : ts) {
    hash = fnv1a(hash, group, std::strlen(group));
    hash = fnv1a(hash, t.name.data(), t.name.size() + 0);
    hash = fnv1a(hash, t.shape.data(), t.shape.size() * sizeof(index_t));
    hash = fnv1a(hash, &t.owner, sizeof t.owner);
    const std::string where = fmt::format("{}: tensor '/{}/{}'", path.string(), group, t.name);
    if (t.name.empty() || t.name.front() == '/' || t.name.back() == '/' ||
        t.name.find("//") != std::string::npos)
      return fmt::format("{}: bad name (empty, or a leading, trailing or double '/')", where);
    if (!seen.insert(t.name).second) return fmt::format("{}: name appears twice", where);
    if ((t.owner < 0 && t.owner != kRowParts) || t.owner >= world.size())
      return fmt::format("{}: owner rank {} is outside the world of {} ranks", where, t.owner, world.size());
    if (t.owner == kRowParts && streamed)
      return fmt::format("{}: a streamed write takes no tensors held in row parts", where);
    if (t.owner == kRowParts && (t.rows < 0 || t.first_row < 0 || (t.rows > 0 && !t.data)))
      return fmt::format("{}: bad row part (first row {}, {} rows, data {})", where, t.first_row, t.rows,
                         t.data ? "set" : "null");
    for (const index_t d : t.shape)
      if (d < 0) return fmt::format("{}: negative dimension in shape {}", where, shape_str(t.shape));
    if (!streamed && t.owner == world.rank() && !t.data && shape_numel(t.shape) > 0)
      return fmt::format("{}: no data on its owner rank {}", where, t.owner);
  }
  return "";
}

index_t rows_of(const Shape& shape) { return shape.empty() ? 1 : shape[0]; }
index_t row_numel(const Shape& shape) {
  return shape.empty() ? 1 : (shape[0] == 0 ? 0 : shape_numel(shape) / shape[0]);
}

/// A streamed write's producer and the size of its chunks.
struct Streamed {
  const RowProducer& produce;
  index_t chunk_numel;
  /// Rows per chunk of a tensor of this shape: whole rows of about chunk_numel elements.
  index_t rows_per_chunk(const Shape& shape) const {
    const index_t row = row_numel(shape);
    return row > 0 ? std::max<index_t>(1, chunk_numel / row) : std::max<index_t>(1, rows_of(shape));
  }
  /// Calls fn(first, rows, chunk) for each chunk of a tensor of this shape in order, with buf
  /// sized to the chunk.
  template <class Fn>
  void each_chunk(const Shape& shape, std::vector<float>& buf, Fn&& fn) const {
    const index_t rows = rows_of(shape), step = rows_per_chunk(shape), row = row_numel(shape);
    for (index_t first = 0; first < rows; first += step) {
      const index_t count = std::min(step, rows - first);
      buf.resize(static_cast<std::size_t>(count * row));
      fn(first, count, buf.data());
    }
  }
};

/// Writes rows [first, first + count) of d (the whole of a scalar).
void write_chunk(h5::Dataset& d, const Shape& shape, index_t first, index_t count, const float* data) {
  if (shape.empty())
    d.write(data);
  else
    d.write_rows(first, count, data);
}

/// (first row, rows) of one rank's part of a kRowParts tensor.
struct RowPart {
  index_t first = 0, rows = 0;
};
/// For each tensor (model, then optim order): every rank's part, by rank, for kRowParts
/// tensors; empty for the others.
using PartTable = std::vector<std::vector<RowPart>>;

/// Gathers every rank's row parts and checks that they tile each kRowParts tensor.
PartTable gather_parts(const fs::path& path, const std::vector<TensorRef>& model,
                       const std::vector<TensorRef>& optim, const comm::Communicator& world) {
  std::vector<const TensorRef*> all;
  for (const auto* ts : {&model, &optim})
    for (const auto& t : *ts) all.push_back(&t);
  std::vector<double> mine;
  for (const auto* t : all)
    if (t->owner == kRowParts) {
      mine.push_back(static_cast<double>(t->first_row));
      mine.push_back(static_cast<double>(t->rows));
    }
  PartTable table(all.size());
  if (mine.empty()) return table;
  const std::vector<double> every = world.allgatherv(mine);  // rank-major: rank r's pairs, then r + 1's
  const std::size_t per_rank = mine.size();
  std::string err;
  std::size_t k = 0;  // index of the pair within a rank's list
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i]->owner != kRowParts) continue;
    index_t next = 0;
    for (int r = 0; r < world.size(); ++r) {
      const std::size_t at = static_cast<std::size_t>(r) * per_rank + k;
      const RowPart part{static_cast<index_t>(every[at]), static_cast<index_t>(every[at + 1])};
      if (err.empty() && part.rows > 0 && part.first != next)
        err = fmt::format("{}: tensor '{}': rank {} holds rows from {} but the parts before end at row {}",
                          path.string(), all[i]->name, r, part.first, next);
      if (part.rows > 0) next = part.first + part.rows;
      table[i].push_back(part);
    }
    if (err.empty() && next != rows_of(all[i]->shape))
      err = fmt::format("{}: tensor '{}': the ranks' row parts end at row {} of {}", path.string(),
                        all[i]->name, next, rows_of(all[i]->shape));
    k += 2;
  }
  if (!err.empty()) fail<IoError>("{}", err);  // every rank saw the same table and the same error
  return table;
}

PartTable validate(const fs::path& path, const CheckpointMeta& meta, const std::vector<TensorRef>& model,
                   const std::vector<TensorRef>& optim, const comm::Communicator& world,
                   bool streamed = false) {
  std::uint64_t hash = 1469598103934665603ull;
  std::string err = check_tensors(path, "model", model, world, hash, streamed);
  if (err.empty()) err = check_tensors(path, "optim", optim, world, hash, streamed);
  for (const auto& [k, v] : meta.extra)
    if (err.empty() && (is_required_attr(k) || k.empty()))
      err = fmt::format("{}: extra attribute '{}' clashes with a required checkpoint attribute",
                        path.string(), k);
  throw_if_any(world, err);
  // Collective HDF5 calls hang when ranks disagree on the datasets; catch that before opening.
  const auto hashes = world.allgather(static_cast<std::int64_t>(hash));
  for (int r = 1; r < world.size(); ++r)
    if (hashes[r] != hashes[0])
      fail<IoError>(
          "{}: ranks 0 and {} pass different tensor lists (names, shapes or owners) to write_checkpoint",
          path.string(), r);
  return gather_parts(path, model, optim, world);
}

void broadcast_meta(CheckpointMeta& m, const comm::Communicator& world) {
  if (world.size() == 1) return;
  std::vector<std::int64_t> nums = {m.step, m.tokens_seen, m.world_size};
  world.broadcast(nums);
  m.step = nums[0];
  m.tokens_seen = nums[1];
  m.world_size = static_cast<int>(nums[2]);
  world.broadcast(m.config_toml);
  world.broadcast(m.rng_state);
  world.broadcast(m.data_cursor);
  std::vector<std::string> kv;
  for (const auto& [k, v] : m.extra) {
    kv.push_back(k);
    kv.push_back(v);
  }
  std::int64_t n = static_cast<std::int64_t>(kv.size());
  world.broadcast_value(n);
  kv.resize(static_cast<std::size_t>(n));
  for (auto& s : kv) world.broadcast(s);
  m.extra.clear();
  for (std::size_t i = 0; i + 1 < kv.size(); i += 2) m.extra[kv[i]] = kv[i + 1];
  // The model attrs as (name, kind, text) triples; "{:.17g}" round-trips a double exactly.
  std::vector<std::string> attrs;
  for (const auto& [k, v] : m.model_attrs) {
    attrs.push_back(k);
    attrs.push_back(std::to_string(v.index()));
    attrs.push_back(std::visit(
        [](const auto& x) -> std::string {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>)
            return x;
          else if constexpr (std::is_same_v<T, double>)
            return fmt::format("{:.17g}", x);
          else
            return std::to_string(x);
        },
        v));
  }
  n = static_cast<std::int64_t>(attrs.size());
  world.broadcast_value(n);
  attrs.resize(static_cast<std::size_t>(n));
  for (auto& s : attrs) world.broadcast(s);
  m.model_attrs.clear();
  for (std::size_t i = 0; i + 2 < attrs.size(); i += 3) {
    const std::string& text = attrs[i + 2];
    if (attrs[i + 1] == "0")
      m.model_attrs[attrs[i]] = static_cast<std::int64_t>(std::stoll(text));
    else if (attrs[i + 1] == "1")
      m.model_attrs[attrs[i]] = std::stod(text);
    else
      m.model_attrs[attrs[i]] = text;
  }
}

void write_meta(h5::File& f, const CheckpointMeta& m) {
  f.write_attr("format_version", std::int64_t{kCheckpointFormatVersion});
  f.write_attr("step", m.step);
  f.write_attr("tokens_seen", m.tokens_seen);
  f.write_attr("world_size", std::int64_t{m.world_size});
  f.write_attr("data_cursor", m.data_cursor);
  f.write_attr("rng_state", m.rng_state);
  f.write_attr("config_toml", m.config_toml);
  f.write_attr("created_by", fmt::format("flowlm {} ({})", FLOWLM_VERSION, FLOWLM_GIT_DESCRIBE));
  for (const auto& [k, v] : m.extra) f.write_attr(k, v);
  f.create_group("/model");
  for (const auto& kv : m.model_attrs)  // C++17 lambdas cannot capture structured bindings
    std::visit([&](const auto& x) { f.write_attr(kv.first, x, "/model"); }, kv.second);
  f.create_group("/optim");
}

std::string full_name(const char* group, const TensorRef& t) { return fmt::format("/{}/{}", group, t.name); }

/// Parallel HDF5: metadata and dataset creation collectively, then each owner writes its own.
std::string write_parallel(const fs::path& tmp, const CheckpointMeta& meta,
                           const std::vector<TensorRef>& model, const std::vector<TensorRef>& optim,
                           const comm::Communicator& world, const Streamed* streamed) {
  // Row parts: each rank writes its own hyperslab (independent I/O), like an owner its tensor.
  std::string err;
  std::optional<h5::File> f;
  std::vector<std::pair<h5::Dataset, const TensorRef*>> sets;
  try {
    f.emplace(h5::File::create_parallel(tmp, world));
    write_meta(*f, meta);
    for (const auto* group : {"model", "optim"})
      for (const auto& t : std::string(group) == "model" ? model : optim)
        sets.emplace_back(f->create_dataset<float>(full_name(group, t), t.shape), &t);
  } catch (const std::exception& e) {
    err = e.what();
  }
  if (err.empty()) {
    std::vector<float> buf;  // streamed: one produced chunk at a time
    for (std::size_t i = 0; i < sets.size(); ++i) {
      h5::Dataset& d = sets[i].first;  // not a structured binding: the lambda below captures it
      const TensorRef* t = sets[i].second;
      if (t->owner == kRowParts) {
        try {
          if (t->rows > 0 && t->shape.empty())
            d.write(t->data);
          else if (t->rows > 0)
            d.write_rows(t->first_row, t->rows, t->data);
        } catch (const std::exception& e) {
          err = e.what();
          break;
        }
        continue;
      }
      if (t->owner != world.rank()) continue;
      try {
        if (streamed)
          streamed->each_chunk(t->shape, buf, [&](index_t first, index_t count, float* chunk) {
            streamed->produce(i, first, count, chunk);
            write_chunk(d, t->shape, first, count, chunk);
          });
        else
          d.write(t->data);
      } catch (const std::exception& e) {
        err = e.what();
        break;
      }
    }
  }
  sets.clear();  // dataset and file closes are collective: every rank reaches them in the same order
  try {
    if (f) f->close();
  } catch (const std::exception& e) {
    if (err.empty()) err = e.what();
  }
  return err;
}

/// Serial HDF5 (or one rank): rank 0 writes; other owners' tensors reach it by broadcast
/// (comm has no point-to-point calls; this path is the fallback, not the fast one).
std::string write_funnel(const fs::path& tmp, const CheckpointMeta& meta, const std::vector<TensorRef>& model,
                         const std::vector<TensorRef>& optim, const comm::Communicator& world,
                         const Streamed* streamed, const PartTable& parts) {
  std::string err;
  std::optional<h5::File> f;
  const bool root = world.is_root();
  const auto guarded = [&](auto&& fn) {
    if (!root || !err.empty()) return;
    try {
      fn();
    } catch (const std::exception& e) {
      err = e.what();
    }
  };
  guarded([&] {
    f.emplace(h5::File::create(tmp));
    write_meta(*f, meta);
  });
  std::vector<float> buf;
  std::size_t index = 0;
  for (const auto* group : {"model", "optim"}) {
    for (const auto& t : std::string(group) == "model" ? model : optim) {
      const float* src = t.data;
      if (t.owner == kRowParts) {
        // Each part from the rank holding it, into its place in one whole-tensor buffer.
        buf.resize(static_cast<std::size_t>(shape_numel(t.shape)));
        const index_t row = row_numel(t.shape);
        for (int r = 0; r < world.size(); ++r) {
          const RowPart& part = parts[index][static_cast<std::size_t>(r)];
          if (part.rows == 0) continue;
          float* dst = buf.data() + part.first * row;
          if (world.rank() == r) std::copy(t.data, t.data + part.rows * row, dst);
          world.broadcast_bytes(dst, static_cast<std::size_t>(part.rows * row) * sizeof(float), r);
        }
        src = buf.data();
      } else if (streamed) {
        // Chunk by chunk: produced on the owner, broadcast to rank 0 (when elsewhere), written.
        std::optional<h5::Dataset> d;
        guarded([&] { d.emplace(f->create_dataset<float>(full_name(group, t), t.shape)); });
        streamed->each_chunk(t.shape, buf, [&](index_t first, index_t count, float* chunk) {
          if (world.rank() == t.owner && err.empty()) {
            try {
              streamed->produce(index, first, count, chunk);
            } catch (const std::exception& e) {
              err = e.what();  // keep going: the broadcasts below must still match on every rank
            }
          }
          if (t.owner != 0) world.broadcast_bytes(chunk, buf.size() * sizeof(float), t.owner);
          guarded([&] { write_chunk(*d, t.shape, first, count, chunk); });
        });
        ++index;
        continue;
      } else if (t.owner != 0) {
        buf.resize(static_cast<std::size_t>(shape_numel(t.shape)));
        if (world.rank() == t.owner) std::copy(t.data, t.data + buf.size(), buf.begin());
        world.broadcast_bytes(buf.data(), buf.size() * sizeof(float), t.owner);
        src = buf.data();
      }
      guarded([&] { f->create_dataset<float>(full_name(group, t), t.shape).write(src); });
      ++index;
    }
  }
  guarded([&] { f->close(); });
  f.reset();
  return err;
}

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) {
    if (directory) return;  // some file systems refuse to open directories; the rename still stands
    fail<IoError>("{}: cannot open for fsync: {}", p.string(), std::strerror(errno));
  }
  const int rc = ::fsync(fd);
  const int saved = errno;
  ::close(fd);
  if (rc != 0 && !directory) fail<IoError>("{}: fsync failed: {}", p.string(), std::strerror(saved));
}

}  // namespace

namespace {

void write_checkpoint_impl(const fs::path& path, const CheckpointMeta& meta_in,
                           const std::vector<TensorRef>& model, const std::vector<TensorRef>& optim,
                           const comm::Communicator& world, WriteStrategy strategy,
                           const Streamed* streamed) {
  const PartTable parts = validate(path, meta_in, model, optim, world, streamed != nullptr);
  CheckpointMeta meta = meta_in;
  broadcast_meta(meta, world);
  fs::path tmp = path;
  tmp += ".tmp";

  std::string err;
  if (world.is_root()) {
    std::error_code ec;
    if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
    if (!ec) fs::remove(tmp, ec);  // a stale tmp from a crashed run
    if (ec) err = fmt::format("{}: cannot prepare the checkpoint directory: {}", path.string(), ec.message());
  }
  throw_if_any(world, err);

  const bool parallel = FLOWLM_HDF5_PARALLEL && world.size() > 1 && strategy == WriteStrategy::automatic;
  {
    // MPI-IO's collectives inside HDF5 are not flowlm's: watch the whole write (a full disk can
    // leave one rank's MPI-IO waiting for another's failed write forever).
    const comm::WaitScope wait(parallel ? "a parallel HDF5 (MPI-IO) write" : "a checkpoint write");
    err = parallel ? write_parallel(tmp, meta, model, optim, world, streamed)
                   : write_funnel(tmp, meta, model, optim, world, streamed, parts);
  }
  if (err.empty() && world.is_root()) {
    try {
      fsync_path(tmp, false);
    } catch (const std::exception& e) {
      err = e.what();
    }
  }
  if (auto msg = agree_on_error(world, err)) {
    if (world.is_root()) {
      std::error_code ec;
      fs::remove(tmp, ec);
    }
    world.barrier();
    throw IoError(fmt::format("writing checkpoint failed (any existing {} is untouched): {}",
                              path.filename().string(), *msg));
  }

  err.clear();
  if (world.is_root()) {
    std::error_code ec;
    fs::rename(tmp, path, ec);  // atomic replace on POSIX file systems
    if (ec) {
      err = fmt::format("{}: cannot rename {} into place: {}", path.string(), tmp.filename().string(),
                        ec.message());
      fs::remove(tmp, ec);
    } else {
      fsync_path(path.has_parent_path() ? path.parent_path() : fs::path("."), true);
    }
  }
  throw_if_any(world, err);
}

}  // namespace

void write_checkpoint(const fs::path& path, const CheckpointMeta& meta, const std::vector<TensorRef>& model,
                      const std::vector<TensorRef>& optim, const comm::Communicator& world,
                      WriteStrategy strategy) {
  write_checkpoint_impl(path, meta, model, optim, world, strategy, nullptr);
}

void write_checkpoint_streamed(const fs::path& path, const CheckpointMeta& meta,
                               const std::vector<TensorRef>& model, const RowProducer& produce,
                               index_t chunk_numel, const comm::Communicator& world, WriteStrategy strategy) {
  const Streamed streamed{produce, chunk_numel};
  write_checkpoint_impl(path, meta, model, {}, world, strategy, &streamed);
}

void write_checkpoint_streamed(const fs::path& path, const CheckpointMeta& meta,
                               const std::vector<TensorRef>& model, const TensorProducer& produce,
                               const comm::Communicator& world, WriteStrategy strategy) {
  // One chunk per tensor: every call is (index, 0, all rows).
  const RowProducer whole = [&](std::size_t i, index_t, index_t, float* out) { produce(i, out); };
  write_checkpoint_streamed(path, meta, model, whole, std::numeric_limits<index_t>::max(), world, strategy);
}

// ---- reading ------------------------------------------------------------------------------

CheckpointReader::CheckpointReader(const fs::path& path) : file_(h5::File::open(path)) {
  const std::string p = path.string();
  if (!file_.has_attr("format_version"))
    fail<IoError>("{}: has no attribute 'format_version': not a flowlm checkpoint", p);
  const auto version = file_.read_attr_int("format_version");
  if (version > kCheckpointFormatVersion)
    fail<IoError>("{}: format_version {} is newer than this flowlm reads ({}); use a newer flowlm", p,
                  version, kCheckpointFormatVersion);
  if (version < 1) fail<IoError>("{}: invalid format_version {}", p, version);
  for (const char* a : kRequiredAttrs)
    if (!file_.has_attr(a))
      fail<IoError>("{}: missing attribute '{}' (an incomplete or damaged checkpoint)", p, a);
  if (!file_.is_group("/model"))
    fail<IoError>("{}: no /model group (an incomplete or damaged checkpoint)", p);
  meta_.step = file_.read_attr_int("step");
  meta_.tokens_seen = file_.read_attr_int("tokens_seen");
  meta_.world_size = static_cast<int>(file_.read_attr_int("world_size"));
  meta_.config_toml = file_.read_attr_string("config_toml");
  meta_.rng_state = file_.read_attr_string("rng_state");
  meta_.data_cursor = file_.read_attr_ints("data_cursor");
  for (const auto& name : file_.attr_names())
    if (!is_required_attr(name))
      meta_.extra[name] =
          file_.attr_kind(name) == h5::DType::string ? file_.read_attr_string(name) : file_.attr_text(name);
  for (const auto& name : file_.attr_names("/model")) {
    const h5::DType kind = file_.attr_kind(name, "/model");
    if (kind == h5::DType::string)
      meta_.model_attrs[name] = file_.read_attr_string(name, "/model");
    else if (kind == h5::DType::f64 || kind == h5::DType::f32)
      meta_.model_attrs[name] = file_.read_attr_double(name, "/model");
    else if (kind != h5::DType::other)
      meta_.model_attrs[name] = file_.read_attr_int(name, "/model");
    else
      fail<IoError>("{}: attribute '{}' of /model is neither a string, an integer nor a float", p, name);
  }
}

std::vector<std::pair<std::string, Shape>> CheckpointReader::tensors(const std::string& group) const {
  std::vector<std::pair<std::string, Shape>> out;
  const std::string g = "/" + group;
  if (!file_.is_group(g)) return out;
  for (const auto& d : file_.list_datasets(g)) out.emplace_back(d.path.substr(g.size() + 1), d.shape);
  return out;
}

bool CheckpointReader::has(const std::string& group, const std::string& name) const {
  return file_.is_dataset(fmt::format("/{}/{}", group, name));
}

namespace {

/// Dataset /group/name of a checkpoint, which must exist with shape `expected`.
h5::Dataset open_expected(const h5::File& file, const fs::path& path, const std::string& ds,
                          const Shape& expected) {
  if (!file.is_dataset(ds))
    fail<IoError>("{}: missing dataset '{}' (checkpoint of a different model?)", path.string(), ds);
  h5::Dataset d = file.open_dataset(ds);
  if (d.shape() != expected)
    fail<IoError>("{}: dataset '{}' has shape {}, expected {} (checkpoint of a different model config?)",
                  path.string(), ds, shape_str(d.shape()), shape_str(expected));
  return d;
}

}  // namespace

void CheckpointReader::read(const std::string& group, const std::string& name, const Shape& expected,
                            float* out) const {
  open_expected(file_, path(), fmt::format("/{}/{}", group, name), expected).read(out);
}

void CheckpointReader::read_rows(const std::string& group, const std::string& name, const Shape& expected,
                                 index_t first, index_t count, float* out) const {
  const std::string ds = fmt::format("/{}/{}", group, name);
  const h5::Dataset d = open_expected(file_, path(), ds, expected);
  if (first < 0 || count < 0 || first + count > rows_of(expected))
    fail<IoError>("{}: rows [{}, {}) of dataset '{}' are outside its {} rows", path().string(), first,
                  first + count, ds, rows_of(expected));
  if (count == 0) return;
  if (expected.empty())
    d.read(out);
  else
    d.read_rows(first, count, out);
}

Tensor CheckpointReader::read(const std::string& group, const std::string& name) const {
  const std::string ds = fmt::format("/{}/{}", group, name);
  if (!file_.is_dataset(ds)) fail<IoError>("{}: missing dataset '{}'", path().string(), ds);
  const h5::Dataset d = file_.open_dataset(ds);
  Tensor t(d.shape());
  d.read(t.ptr());
  return t;
}

// ---- run directories ----------------------------------------------------------------------

std::string checkpoint_name(std::int64_t step) {
  if (step < 0) fail<IoError>("checkpoint_name: negative step {}", step);
  return fmt::format("step_{:08d}.h5", step);
}

std::vector<std::pair<std::int64_t, fs::path>> list_checkpoints(const fs::path& dir) {
  static const std::regex re(R"(step_(\d{1,18})\.h5)");
  std::vector<std::pair<std::int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (e.is_regular_file(ec) && std::regex_match(name, m, re))
      out.emplace_back(std::stoll(m[1].str()), e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<fs::path> newest_valid_checkpoint(const fs::path& dir) {
  const auto all = list_checkpoints(dir);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      const CheckpointReader r(it->second);
      (void)r.tensors("model");
      return it->second;
    } catch (const IoError& e) {
      log::warn("skipping damaged checkpoint: {}", e.what());
    }
  }
  return std::nullopt;
}

void prune_checkpoints(const fs::path& dir, std::int64_t keep_last) {
  if (keep_last <= 0) return;
  const auto all = list_checkpoints(dir);
  const std::int64_t excess = static_cast<std::int64_t>(all.size()) - keep_last;
  for (std::int64_t i = 0; i < excess; ++i) {
    std::error_code ec;
    fs::remove(all[static_cast<std::size_t>(i)].second, ec);
    if (ec)
      fail<IoError>("{}: cannot delete old checkpoint: {}", all[static_cast<std::size_t>(i)].second.string(),
                    ec.message());
  }
}

}  // namespace flowlm::io
