// The safetensors reader and writer: round trips in F32 and BF16, F16/BF16 conversion, sharded
// model directories, and every malformed-file case giving an IoError that names the file and the
// tensor (never a crash). The agreement with the safetensors library itself is tested in tests/hf.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "io/safetensors.hpp"
#include "support/testing.hpp"

namespace {

namespace io = flowlm::io;
using flowlm::IoError;
using flowlm::Shape;
using flowlm::testing::contains;
using flowlm::testing::TempDir;
using flowlm::testing::thrown;

/// A file with the given JSON header and `data_bytes` zero bytes of data.
std::string write_raw(const TempDir& dir, const std::string& header, std::size_t data_bytes,
                      std::uint64_t header_len_override = 0) {
  const std::string path = (dir / "x.safetensors").string();
  std::ofstream out(path, std::ios::binary);
  const std::uint64_t n = header_len_override ? header_len_override : header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  out << std::string(data_bytes, '\0');
  return path;
}

std::string open_error(const std::string& path) {
  return thrown<IoError>([&] { io::SafetensorsFile f(path); });
}

TEST(Safetensors, RoundTripF32AndBf16WithMetadata) {
  TempDir dir;
  const std::vector<io::SafetensorsOut> tensors{{"a.weight", {2, 3}}, {"b", {5}}, {"empty", {0, 4}}};
  auto fill = [](std::size_t i, float* out) {
    const std::size_t n = i == 0 ? 6 : (i == 1 ? 5 : 0);
    for (std::size_t k = 0; k < n; ++k) out[k] = static_cast<float>(i * 10 + k) + 0.1f;
  };
  for (const auto dtype : {io::SafetensorsDType::f32, io::SafetensorsDType::bf16}) {
    const auto path = dir / "t.safetensors";
    io::write_safetensors(path, tensors, dtype, fill, {{"format", "pt"}});
    const io::SafetensorsFile f(path);
    ASSERT_EQ(f.tensors().size(), 3u);
    EXPECT_EQ(f.metadata().at("format"), "pt");
    EXPECT_EQ(f.find("a.weight")->dtype, io::safetensors_dtype_name(dtype));
    std::vector<float> a(6), b(5);
    f.read_f32("a.weight", {2, 3}, a.data());
    f.read_f32("b", {5}, b.data());
    for (std::size_t k = 0; k < 6; ++k) {
      const float want = static_cast<float>(k) + 0.1f;
      EXPECT_EQ(a[k], dtype == io::SafetensorsDType::f32 ? want : io::bf16_to_f32(io::f32_to_bf16(want)));
    }
    EXPECT_NEAR(b[4], 14.1f, dtype == io::SafetensorsDType::f32 ? 0.0f : 0.06f);
    EXPECT_TRUE(contains(thrown<IoError>([&] { f.read_f32("b", {4}, b.data()); }),
                         "'b' has shape [5], expected [4]"));
    EXPECT_TRUE(contains(thrown<IoError>([&] { f.read_f32("nope", {1}, b.data()); }), "no tensor 'nope'"));
  }
}

TEST(Safetensors, HalfAndBfloatConversions) {
  // Round to nearest even on the 16 dropped bits; NaN stays NaN; Inf stays Inf.
  EXPECT_EQ(io::f32_to_bf16(1.0f), 0x3f80);
  std::uint32_t bits = 0x3f808000u;  // exactly half way, even below: rounds down
  float x;
  std::memcpy(&x, &bits, 4);
  EXPECT_EQ(io::f32_to_bf16(x), 0x3f80);
  bits = 0x3f818000u;  // half way, odd below: rounds up
  std::memcpy(&x, &bits, 4);
  EXPECT_EQ(io::f32_to_bf16(x), 0x3f82);
  EXPECT_TRUE(std::isnan(io::bf16_to_f32(io::f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(io::bf16_to_f32(io::f32_to_bf16(std::numeric_limits<float>::infinity())),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(io::f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(io::f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(io::f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(io::f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(io::f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(io::f16_to_f32(0x8000), -0.0f);
  EXPECT_TRUE(std::signbit(io::f16_to_f32(0x8000)));
  EXPECT_EQ(io::f16_to_f32(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(io::f16_to_f32(0x7e00)));
}

TEST(Safetensors, ReadsF16) {
  TempDir dir;
  const std::string header = R"({"h":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})";
  const std::string path = (dir / "h.safetensors").string();
  {
    std::ofstream out(path, std::ios::binary);
    const std::uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header;
    const std::uint16_t v[2] = {0x3c00, 0xb800};  // 1, -0.5
    out.write(reinterpret_cast<const char*>(v), 4);
  }
  std::vector<float> got(2);
  io::SafetensorsFile(path).read_f32("h", {2}, got.data());
  EXPECT_EQ(got[0], 1.0f);
  EXPECT_EQ(got[1], -0.5f);
}

TEST(Safetensors, MalformedFilesNameTheFileAndTheTensor) {
  TempDir dir;
  const std::string ok = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  struct Case {
    std::string header;
    std::size_t data;
    std::uint64_t len_override;
    std::string words;
  };
  const std::vector<Case> cases{
      {ok, 8, 1u << 30, "exceeds the format's limit"},
      {ok, 8, ok.size() + 100, "runs past the end"},
      {"{not json", 0, 0, "not valid JSON"},
      {"[1, 2]", 0, 0, "not a JSON object"},
      {R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8, 0, "tensor 'w': unknown dtype 'Q4'"},
      {R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8, 0, "tensor 'w': shape"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8, 0, "tensor 'w': data_offsets"},
      {R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8, 0,
       "tensor 'w': data_offsets [0, 8] hold 8"},
      {R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8, 0, "end before they begin"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       12, 0, "tensor 'b' starts at byte 8 of the data, expected 4: the tensors leave a gap"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8, 0, "overlap"},
      {ok, 4, 0, "the tensors end at byte 8 of the data, but the data section has 4 bytes"},
      {ok, 12, 0, "the data section has 12 bytes"},
      {R"({"__metadata__":{"k":1},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8, 0,
       "__metadata__.k is not a string"},
  };
  for (const auto& c : cases) {
    const std::string path = write_raw(dir, c.header, c.data, c.len_override);
    const std::string msg = open_error(path);
    EXPECT_TRUE(contains(msg, path)) << msg;
    EXPECT_TRUE(contains(msg, c.words)) << "want '" << c.words << "' in: " << msg;
  }
  {
    const std::string path = (dir / "short.safetensors").string();
    std::ofstream(path) << "abc";
    EXPECT_TRUE(contains(open_error(path), "shorter than the 8-byte header length"));
  }
  EXPECT_TRUE(contains(open_error((dir / "missing.safetensors").string()), "cannot open"));
  // An integer tensor parses but does not read as weights.
  const std::string ints = write_raw(dir, R"({"i":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8);
  std::vector<float> out(1);
  EXPECT_TRUE(contains(thrown<IoError>([&] { io::SafetensorsFile(ints).read_f32("i", {1}, out.data()); }),
                       "tensor 'i' is I64"));
}

TEST(Safetensors, ShardedModelDirectory) {
  TempDir dir;
  std::vector<io::SafetensorsOut> tensors;
  for (int i = 0; i < 5; ++i) tensors.push_back({"t" + std::to_string(i), {10}});
  auto fill = [](std::size_t i, float* out) {
    for (int k = 0; k < 10; ++k) out[k] = static_cast<float>(i) * 100 + static_cast<float>(k);
  };
  // 40 bytes per tensor, 100-byte shards: 2 + 2 + 1.
  const auto files = io::write_safetensors_model(dir.path(), tensors, io::SafetensorsDType::f32, fill, 100);
  ASSERT_EQ(files.size(), 4u);  // three shards and the index
  EXPECT_TRUE(std::filesystem::exists(dir / "model-00003-of-00003.safetensors"));
  const io::SafetensorsModel model(dir.path());
  EXPECT_EQ(model.files().size(), 3u);
  EXPECT_EQ(model.tensors().size(), 5u);
  std::vector<float> got(10);
  model.read_f32("t4", {10}, got.data());
  EXPECT_EQ(got[3], 403.0f);
  EXPECT_TRUE(contains(thrown<IoError>([&] { model.read_f32("t9", {10}, got.data()); }), "no tensor 't9'"));

  // Writing one file again removes the shards and the index, which would shadow it.
  io::write_safetensors_model(dir.path(), tensors, io::SafetensorsDType::f32, fill, 0);
  EXPECT_FALSE(std::filesystem::exists(dir / "model.safetensors.index.json"));
  EXPECT_FALSE(std::filesystem::exists(dir / "model-00001-of-00003.safetensors"));
  EXPECT_EQ(io::SafetensorsModel(dir.path()).files().size(), 1u);

  // An index that points at a file without the tensor is refused by name.
  io::write_safetensors_model(dir.path(), tensors, io::SafetensorsDType::f32, fill, 100);
  std::ofstream(dir / "model.safetensors.index.json")
      << R"({"weight_map": {"t0": "model-00001-of-00003.safetensors", "t1": "model-00001-of-00003.safetensors",)"
      << R"( "t2": "model-00001-of-00003.safetensors", "t3": "model-00002-of-00003.safetensors", "t4": "model-00003-of-00003.safetensors"}})";
  const std::string msg = thrown<IoError>([&] { io::SafetensorsModel m(dir.path()); });
  EXPECT_TRUE(contains(msg, "'t2'")) << msg;
}

TEST(Safetensors, FailedWriteLeavesTheExistingFile) {
  TempDir dir;
  const auto path = dir / "keep.safetensors";
  const std::vector<io::SafetensorsOut> one{{"w", {3}}};
  io::write_safetensors(path, one, io::SafetensorsDType::f32,
                        [](std::size_t, float* o) { o[0] = o[1] = o[2] = 1; });
  const auto before = std::filesystem::file_size(path);
  EXPECT_THROW(io::write_safetensors(path, {{"w", {100}}}, io::SafetensorsDType::f32,
                                     [](std::size_t, float*) { throw IoError("producer failed"); }),
               IoError);
  EXPECT_EQ(std::filesystem::file_size(path), before);
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
  std::vector<float> got(3);
  io::SafetensorsFile(path).read_f32("w", {3}, got.data());
  EXPECT_EQ(got[2], 1.0f);
}

}  // namespace
