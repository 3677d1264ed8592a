#include "h5_spec.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>
#include <system_error>
#include <type_traits>

#include "core/error.hpp"
#include "fuzz.hpp"
#include "io/hdf5.hpp"

namespace flowlm::fuzz {
namespace fs = std::filesystem;
namespace h5 = io::h5;

namespace {

constexpr std::int64_t kMaxElements = 1 << 14;  // keeps every file small and every run fast

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

/// The line after its first n words and the blank that follows them ("" when nothing is left).
std::string rest_after_words(const std::string& line, std::size_t n) {
  std::size_t at = 0;
  for (std::size_t k = 0; k < n; ++k) {
    at = line.find_first_not_of(" \t", at);
    if (at == std::string::npos) return {};
    at = line.find_first_of(" \t", at);
    if (at == std::string::npos) return {};
  }
  return line.substr(at + 1);
}

bool parse_number(const std::string& w, long double& out) {
  const char* s = w.c_str();
  char* end = nullptr;
  out = std::strtold(s, &end);
  return end != s && *end == '\0';
}

/// "scalar" -> {}, "2x3" -> {2, 3}; false when unreadable or over kMaxElements.
bool parse_shape(const std::string& w, std::vector<std::int64_t>& shape, bool& scalar) {
  shape.clear();
  scalar = w == "scalar";
  if (scalar) return true;
  std::int64_t numel = 1;
  std::size_t at = 0;
  while (at <= w.size()) {
    const std::size_t x = std::min(w.find('x', at), w.size());
    const std::string d = w.substr(at, x - at);
    if (d.empty() || d.size() > 6 || d.find_first_not_of("0123456789") != std::string::npos) return false;
    const std::int64_t v = std::stoll(d);
    numel *= std::max<std::int64_t>(v, 1);
    if (numel > kMaxElements || shape.size() >= 4) return false;
    shape.push_back(v);
    at = x + 1;
  }
  return !shape.empty();
}

template <class T>
T saturate(long double v) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(v)) return std::numeric_limits<T>::quiet_NaN();
    if (v > static_cast<long double>(std::numeric_limits<T>::max()))
      return std::numeric_limits<T>::infinity();
    if (v < static_cast<long double>(std::numeric_limits<T>::lowest()))
      return -std::numeric_limits<T>::infinity();
    return static_cast<T>(v);
  } else {
    if (std::isnan(v)) return 0;
    if (v >= static_cast<long double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    if (v <= static_cast<long double>(std::numeric_limits<T>::lowest()))
      return std::numeric_limits<T>::lowest();
    return static_cast<T>(v);
  }
}

long double value_at(const H5Object& o, std::size_t i) {
  return o.values.empty() ? static_cast<long double>(i) : o.values[i % o.values.size()];
}

template <class T>
void write_typed(h5::File& f, const H5Object& o) {
  const std::vector<std::int64_t> shape = o.scalar ? std::vector<std::int64_t>{} : o.shape;
  std::int64_t n = 1;
  for (const auto d : shape) n *= d;
  std::vector<T> v(static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = saturate<T>(value_at(o, i));
  auto d = f.create_dataset<T>(o.name, Shape(shape.begin(), shape.end()));
  if (n > 0) d.write(v.data());
}

void write_dataset(h5::File& f, const H5Object& o) {
  const std::string& t = o.dtype;
  if (t == "u8") return write_typed<std::uint8_t>(f, o);
  if (t == "i8") return write_typed<std::int8_t>(f, o);
  if (t == "u16") return write_typed<std::uint16_t>(f, o);
  if (t == "i16") return write_typed<std::int16_t>(f, o);
  if (t == "u32") return write_typed<std::uint32_t>(f, o);
  if (t == "i32") return write_typed<std::int32_t>(f, o);
  if (t == "u64") return write_typed<std::uint64_t>(f, o);
  if (t == "i64") return write_typed<std::int64_t>(f, o);
  if (t == "f32") return write_typed<float>(f, o);
  return write_typed<double>(f, o);  // parse_h5_spec admits only the types above and f64
}

void write_object(h5::File& f, const H5Object& o) {
  using K = H5Object::Kind;
  switch (o.kind) {
    case K::dataset:
      write_dataset(f, o);
      break;
    case K::attr_int:
      f.write_attr(o.name, saturate<std::int64_t>(value_at(o, 0)));
      break;
    case K::attr_float:
      f.write_attr(o.name, saturate<double>(value_at(o, 0)));
      break;
    case K::attr_str:
      f.write_attr(o.name, o.text);
      break;
    case K::attr_ints: {
      std::vector<std::int64_t> v;
      for (const auto x : o.values) v.push_back(saturate<std::int64_t>(x));
      f.write_attr(o.name, v);
      break;
    }
    case K::attr_floats: {
      std::vector<double> v;
      for (const auto x : o.values) v.push_back(saturate<double>(x));
      f.write_attr(o.name, v);
      break;
    }
  }
}

}  // namespace

H5Spec parse_h5_spec(std::string_view text, const std::string& first_file) {
  H5Spec spec;
  std::string current = first_file;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto w = words(line);
    if (w.empty() || w[0][0] == '#') continue;
    if (w[0] == "file" && w.size() == 2) {
      current = w[1];
      continue;
    }
    H5Object o;
    std::size_t first_value = 0;
    if (w[0] == "dataset" && w.size() >= 4) {
      static const char* const types[] = {"u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"};
      bool known = false;
      for (const char* t : types) known = known || w[2] == t;
      if (!known || !parse_shape(w[3], o.shape, o.scalar)) continue;
      o.kind = H5Object::Kind::dataset;
      o.dtype = w[2];
      first_value = 4;
    } else if (w[0] == "attr" && w.size() >= 3) {
      const std::string& k = w[2];
      using K = H5Object::Kind;
      if (k == "str") {
        o.kind = K::attr_str;
        o.text = rest_after_words(line, 3);
      } else if (k == "int" || k == "float" || k == "ints" || k == "floats") {
        o.kind = k == "int"     ? K::attr_int
                 : k == "float" ? K::attr_float
                 : k == "ints"  ? K::attr_ints
                                : K::attr_floats;
      } else {
        continue;
      }
      first_value = 3;
    } else {
      spec.directives.push_back(w);
      continue;
    }
    o.name = w[1];
    if (o.kind != H5Object::Kind::attr_str)
      for (std::size_t i = first_value; i < w.size() && o.values.size() < kMaxElements; ++i) {
        long double v = 0;
        if (parse_number(w[i], v)) o.values.push_back(v);
      }
    spec.files[current].push_back(std::move(o));
  }
  return spec;
}

bool write_h5_spec(const H5Spec& spec, const std::vector<std::string>& all_files) {
  std::error_code ec;
  for (const auto& name : all_files) fs::remove(scratch_dir() / name, ec);
  for (const auto& [name, objects] : spec.files) {
    if (std::find(all_files.begin(), all_files.end(), name) == all_files.end()) continue;
    try {
      h5::File f = h5::File::create(scratch_dir() / name);
      for (const auto& o : objects) write_object(f, o);
      f.close();
    } catch (const flowlm::Error&) {
      return false;
    }
  }
  return true;
}

}  // namespace flowlm::fuzz
