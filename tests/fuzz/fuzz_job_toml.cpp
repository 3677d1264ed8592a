// Job files (src/config): parse_job with the schema's type, range and unknown-key checks, --set
// overrides, the train stage's checks between keys (check_stage), and the promise of config.hpp
// that parse_job(to_toml(c)) == c. Input: TOML text; after a NUL byte, one --set override per line.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <vector>

#include "config/config.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace flowlm;
  const auto parts = fuzz::split_parts(fuzz::as_text(data, size), 2);
  std::vector<std::string> overrides;
  if (parts.size() > 1) {
    std::string_view rest = parts[1];
    while (!rest.empty() && overrides.size() < 16) {
      const auto nl = rest.find('\n');
      overrides.emplace_back(rest.substr(0, nl));
      rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    }
  }
  return fuzz::run([&] {
    const config::JobConfig c = config::parse_job(std::string(parts[0]), "job.toml", overrides);
    const std::string text = config::to_toml(c);
    config::JobConfig back;
    try {
      back = config::parse_job(text, "resolved.toml");
    } catch (const Error& e) {
      fuzz::violated(__FILE__, __LINE__, "to_toml(c) parses", fmt::format("{}\n{}", e.what(), text));
    }
    FLOWLM_FUZZ_CHECK(back == c,
                      fmt::format("keys that differ: {}", fmt::join(config::changed_keys(c, back), ", ")));
    config::check_stage(c, "train");
  });
}
