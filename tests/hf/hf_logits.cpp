// Test tool of the Hugging Face comparison (tests/hf): flowlm's logits and per-token losses for
// given tokens, as raw little-endian float32, for pytest to compare with transformers' forward.
//
//   hf_logits <checkpoint.h5> <tokens.txt> <out.f32>
//
// tokens.txt: "B T" then B*T token ids. out.f32: logits [B, T, V], then losses [B, T] of the
// next-token targets tokens[b, t+1] (the last position of each row, with no target, is 0).
#include <fmt/format.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <vector>

#include "comm/comm.hpp"
#include "core/error.hpp"
#include "kernels/backend.hpp"
#include "model/checkpoint.hpp"
#include "model/transformer.hpp"

int main(int argc, char** argv) {
  flowlm::comm::Environment mpi(argc, argv);
  flowlm::kernels::BackendScope backend(argc, argv);
  if (argc != 4) {
    std::fprintf(stderr, "usage: hf_logits <checkpoint.h5> <tokens.txt> <out.f32>\n");
    return 2;
  }
  try {
    std::ifstream in(argv[2]);
    std::int64_t B = 0, T = 0;
    if (!(in >> B >> T) || B <= 0 || T <= 0)
      throw flowlm::DataError(fmt::format("{}: no 'B T' header", argv[2]));
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(B * T)), targets(tokens.size());
    std::vector<float> mask(tokens.size(), 1.0f);
    for (auto& t : tokens)
      if (!(in >> t)) throw flowlm::DataError(fmt::format("{}: fewer than B*T tokens", argv[2]));
    for (std::int64_t b = 0; b < B; ++b)
      for (std::int64_t t = 0; t < T; ++t) {
        const auto i = static_cast<std::size_t>(b * T + t);
        targets[i] = t + 1 < T ? tokens[i + 1] : 0;
        mask[i] = t + 1 < T ? 1.0f : 0.0f;
      }
    const auto model = flowlm::model::load_model(argv[1]);
    model->forward(tokens.data(), targets.data(), mask.data(), B, T, /*training=*/false);
    const auto V = static_cast<std::size_t>(model->config().vocab_size);
    std::FILE* out = std::fopen(argv[3], "wb");
    if (!out) throw flowlm::IoError(fmt::format("{}: cannot create", argv[3]));
    std::fwrite(model->logits(), sizeof(float), tokens.size() * V, out);
    std::fwrite(model->token_losses(), sizeof(float), tokens.size(), out);
    std::fclose(out);
  } catch (const flowlm::Error& e) {
    std::fprintf(stderr, "hf_logits: %s\n", e.what());
    return 1;
  }
  return 0;
}
