// Helper for tests/bench/run_tokenizer_bench.sh: flowlm's tokenization throughput on one thread.
//   bench_tokenizer TOKENIZER TEXT_FILE [--mode lines|doc] [--repeat N]
// lines: every line encoded on its own (as encode_batch of lines); doc: the whole file in one
// encode. Each repeat builds a fresh tokenizer (cold word cache, as a new process would) and
// times the encoding only; prints one JSON line with the best repeat: bytes, tokens, seconds, MB/s.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "data/tokenizer.hpp"

int main(int argc, char** argv) {
  CLI::App app{"tokenization throughput of one flowlm tokenizer on one thread"};
  std::string tokenizer, file, mode = "lines";
  int repeat = 3;
  app.add_option("tokenizer", tokenizer, "byte, a tokenizer file or a model directory")->required();
  app.add_option("text", file, "the text to encode")->required();
  app.add_option("--mode", mode, "lines or doc")->check(CLI::IsMember({"lines", "doc"}));
  app.add_option("--repeat", repeat, "best of N")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  try {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw flowlm::IoError(file + ": cannot open");
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string_view> parts;
    if (mode == "doc") {
      parts.push_back(text);
    } else {
      for (std::size_t at = 0; at < text.size();) {
        std::size_t nl = text.find('\n', at);
        if (nl == std::string::npos) nl = text.size();
        parts.emplace_back(text.data() + at, nl - at);
        at = nl + 1;
      }
    }
    double best = 1e300;
    std::size_t tokens = 0;
    for (int r = 0; r < repeat; ++r) {
      const auto tok = flowlm::data::make_tokenizer(tokenizer);
      tokens = 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (const auto p : parts) tokens += tok->encode(p).size();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("{\"bytes\": %zu, \"tokens\": %zu, \"seconds\": %.6f, \"mb_per_s\": %.3f}\n", text.size(),
                tokens, best, static_cast<double>(text.size()) / best / 1e6);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
}
