// safetensors files (src/io/safetensors): the 8-byte header length, the JSON header, every dtype,
// shape and offset, then reading each F32/F16/BF16 tensor; and SafetensorsModel over a directory
// with that file and an index. Input: the file's bytes; or, when the input starts with '{', the
// model.safetensors.index.json of the directory up to the first NUL byte and the file's bytes after
// it (the file is "a.safetensors" in the directory).
#include <fmt/format.h>

#include <filesystem>
#include <system_error>
#include <vector>

#include "fuzz.hpp"
#include "io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace flowlm;
  namespace fs = std::filesystem;
  const std::string_view input = fuzz::as_text(data, size);
  std::vector<std::string_view> parts{input};
  if (!input.empty() && input[0] == '{') {
    const auto split = fuzz::split_parts(input, 2);
    parts = {split.back(), split.front()};  // {file, index}; no NUL: the index and an empty file
    if (split.size() == 1) parts = {std::string_view(), split.front()};
  }
  const fs::path dir = fuzz::scratch_dir() / "model";
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path file = fuzz::write_scratch("model/a.safetensors", parts[0]);
  fs::remove(dir / "model.safetensors.index.json", ec);
  if (parts.size() > 1) fuzz::write_scratch("model/model.safetensors.index.json", parts[1]);
  const auto read_all = [](const auto& entries, const auto& read) {
    std::vector<float> buf;
    for (const auto& e : entries) {
      if (e.dtype != "F32" && e.dtype != "F16" && e.dtype != "BF16") continue;
      const index_t n = shape_numel(e.shape);
      FLOWLM_FUZZ_CHECK(n >= 0, fmt::format("tensor '{}': {} elements", e.name, n));
      buf.assign(static_cast<std::size_t>(n), 0.0f);
      read(e.name, e.shape, buf.data());
    }
  };
  fuzz::run([&] {
    const io::SafetensorsFile f(file);
    const auto file_size = static_cast<std::uint64_t>(parts[0].size());
    for (const auto& e : f.tensors())
      FLOWLM_FUZZ_CHECK(e.begin <= e.end && e.end <= file_size, fmt::format("tensor '{}'", e.name));
    read_all(f.tensors(), [&](const std::string& n, const Shape& s, float* out) { f.read_f32(n, s, out); });
  });
  fuzz::run([&] {
    const io::SafetensorsModel m(parts.size() > 1 ? dir : file);
    read_all(m.tensors(), [&](const std::string& n, const Shape& s, float* out) { m.read_f32(n, s, out); });
  });
  return 0;
}
