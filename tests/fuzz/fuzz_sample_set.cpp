// Sample sets (src/data/sampleset): read_sample_set_info and read_sample_set on a well-formed HDF5
// file whose datasets and attributes the input decides (a recipe, see h5_spec.hpp; the file is
// "set.h5"; a line "read <first> <count>" reads that block instead of the whole set). What the
// reader accepts must keep the promises the trainer relies on: offsets from 0, increasing, every
// sample at least 2 tokens, 1 <= answer_start < length, tokens in [0, vocab_size).
#include <fmt/format.h>

#include <string>

#include "data/sampleset.hpp"
#include "fuzz.hpp"
#include "h5_spec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace flowlm;
  const fuzz::H5Spec spec = fuzz::parse_h5_spec(fuzz::as_text(data, size), "set.h5");
  if (!fuzz::write_h5_spec(spec, {"set.h5"})) return 0;
  std::int64_t first = 0, count = -1;
  for (const auto& d : spec.directives)
    if (d.size() == 3 && d[0] == "read") {
      try {
        first = std::stoll(d[1]);
        count = std::stoll(d[2]);
      } catch (const std::exception&) {
      }
    }
  const auto path = fuzz::scratch_dir() / "set.h5";
  return fuzz::run([&] {
    const data::SampleSetInfo info = data::read_sample_set_info(path);
    const data::SampleSet s = data::read_sample_set(path, first, count);
    FLOWLM_FUZZ_CHECK(s.total == info.n_samples, fmt::format("{} vs {}", s.total, info.n_samples));
    FLOWLM_FUZZ_CHECK(s.offsets.size() == s.answer_start.size() + 1, "one offset more than samples");
    FLOWLM_FUZZ_CHECK(s.offsets.front() == 0, fmt::format("offsets[0] = {}", s.offsets.front()));
    FLOWLM_FUZZ_CHECK(s.offsets.back() == static_cast<std::int64_t>(s.tokens.size()),
                      fmt::format("offsets end at {} of {} tokens", s.offsets.back(), s.tokens.size()));
    for (index_t i = 0; i < s.size(); ++i) {
      FLOWLM_FUZZ_CHECK(s.length(i) >= 2, fmt::format("sample {} has {} tokens", i, s.length(i)));
      FLOWLM_FUZZ_CHECK(s.answer_start[i] >= 1 && s.answer_start[i] < s.length(i),
                        fmt::format("sample {}: answer_start {} of {}", i, s.answer_start[i], s.length(i)));
    }
    for (const auto t : s.tokens)
      FLOWLM_FUZZ_CHECK(t >= 0 && t < s.vocab_size,
                        fmt::format("token {} of vocab_size {}", t, s.vocab_size));
    std::vector<index_t> ids;
    for (index_t i = 0; i < s.size() && i < 64; ++i) ids.push_back(i);
    data::PaddedBatch batch;
    data::pack_samples(s, ids, batch);
  });
}
