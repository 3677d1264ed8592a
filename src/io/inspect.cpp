#include "io/inspect.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <system_error>

#include "core/log.hpp"
#include "io/hdf5.hpp"

namespace flowlm::io {
namespace {
using flowlm::log::human_bytes;

/// Long or multi-line strings (config_toml) become a one-line description.
std::string short_text(const std::string& s, bool is_string) {
  if (!is_string) return s;
  const auto lines = std::count(s.begin(), s.end(), '\n') + (s.empty() || s.back() == '\n' ? 0 : 1);
  if (lines > 1) return fmt::format("<{} lines, {} chars>", lines, s.size());
  if (s.size() > 100) return fmt::format("\"{}...\" <{} chars>", s.substr(0, 80), s.size());
  return fmt::format("\"{}\"", s);
}

struct Stats {
  double sum = 0, sumsq = 0;
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  index_t n = 0, nonfinite = 0;
};

/// Streams the dataset in row blocks so that large tensors need little memory.
Stats dataset_stats(const h5::Dataset& d) {
  Stats s;
  const index_t total = d.numel();
  if (total == 0) return s;
  std::vector<double> buf;
  const auto add = [&](const std::vector<double>& v) {
    for (const double x : v) {
      if (!std::isfinite(x)) {
        ++s.nonfinite;
        continue;
      }
      s.sum += x;
      s.sumsq += x * x;
      s.lo = std::min(s.lo, x);
      s.hi = std::max(s.hi, x);
      ++s.n;
    }
  };
  if (d.shape().empty()) {
    buf.resize(1);
    d.read(buf.data());
    add(buf);
    return s;
  }
  const index_t rows = d.shape()[0];
  const index_t row_elems = total / std::max<index_t>(rows, 1);
  const index_t block = std::max<index_t>(1, (index_t{1} << 22) / std::max<index_t>(row_elems, 1));
  for (index_t r = 0; r < rows; r += block) {
    const index_t nr = std::min(block, rows - r);
    buf.resize(static_cast<std::size_t>(nr * row_elems));
    d.read_rows(r, nr, buf.data());
    add(buf);
  }
  return s;
}

}  // namespace

void inspect_file(const std::filesystem::path& file, std::ostream& out) {
  const h5::File f = h5::File::open(file);
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  out << fmt::format("file: {} ({})\n", file.string(),
                     ec ? std::string("size unknown") : human_bytes(double(size)));

  const auto attrs = f.attr_names("/");
  out << fmt::format("attributes ({}):\n", attrs.size());
  for (const auto& a : attrs)
    out << fmt::format("  {} = {}\n", a, short_text(f.attr_text(a), f.attr_kind(a) == h5::DType::string));
  if (f.is_group("/model") && !f.attr_names("/model").empty()) {
    std::string line;
    for (const auto& a : f.attr_names("/model"))
      line +=
          fmt::format("{}{} = {}", line.empty() ? "" : ", ", a,
                      short_text(f.attr_text(a, "/model"), f.attr_kind(a, "/model") == h5::DType::string));
    out << fmt::format("model config (/model attributes): {}\n", line);
  }

  const auto sets = f.list_datasets("/");
  out << fmt::format("datasets ({}):\n", sets.size());
  index_t elems = 0, float_elems = 0, model_params = 0;
  double bytes = 0;
  for (const auto& info : sets) {
    const h5::Dataset d = f.open_dataset(info.path);
    const index_t n = d.numel();
    elems += n;
    bytes += double(n) * double(h5::dtype_size(info.dtype));
    std::string line =
        fmt::format("  {}  {}  {}", info.path, h5::dtype_name(info.dtype), shape_str(info.shape));
    if (h5::dtype_is_float(info.dtype) || h5::dtype_is_int(info.dtype)) {
      const Stats s = dataset_stats(d);
      if (h5::dtype_is_float(info.dtype)) {
        float_elems += n;
        if (info.path.rfind("/model/", 0) == 0) model_params += n;
        if (s.n > 0)
          line += fmt::format("  l2={:.6g} min={:.6g} max={:.6g} mean={:.6g}", std::sqrt(s.sumsq), s.lo, s.hi,
                              s.sum / double(s.n));
      } else if (s.n > 0) {
        line += fmt::format("  min={:.0f} max={:.0f}", s.lo, s.hi);
      }
      if (s.nonfinite > 0) line += fmt::format("  NONFINITE={}", s.nonfinite);
    }
    out << line << "\n";
    for (const auto& a : f.attr_names(info.path))
      out << fmt::format(
          "    @{} = {}\n", a,
          short_text(f.attr_text(a, info.path), f.attr_kind(a, info.path) == h5::DType::string));
  }
  out << fmt::format("totals: {} datasets, {} elements ({} floating point), {} of data\n", sets.size(), elems,
                     float_elems, human_bytes(bytes));
  if (f.is_group("/model")) out << fmt::format("model parameters: {}\n", model_params);
}

}  // namespace flowlm::io
