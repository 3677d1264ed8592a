#include "train/evaluate.hpp"

#include <algorithm>

namespace flowlm::train {

LossSum evaluate_windows(model::GPT& gpt, const data::TokenDataset& data, index_t max_windows,
                         index_t micro_batch, const comm::Communicator& world) {
  const index_t T = data.seq_len();
  const std::vector<index_t> mine = data.val_windows(world.rank(), world.size(), max_windows);
  std::vector<std::int32_t> inputs(static_cast<std::size_t>(micro_batch * T)),
      targets(static_cast<std::size_t>(micro_batch * T));
  double sum = 0;
  for (std::size_t first = 0; first < mine.size(); first += static_cast<std::size_t>(micro_batch)) {
    const auto B = static_cast<index_t>(
        std::min<std::size_t>(static_cast<std::size_t>(micro_batch), mine.size() - first));
    for (index_t b = 0; b < B; ++b)
      data.load_window(mine[first + static_cast<std::size_t>(b)], inputs.data() + b * T,
                       targets.data() + b * T);
    gpt.forward(inputs.data(), targets.data(), nullptr, B, T, /*training=*/false);
    const float* losses = gpt.token_losses();
    for (index_t i = 0; i < B * T; ++i) sum += losses[i];
  }
  LossSum total;
  total.sum = world.sum(sum);
  total.tokens = world.sum(static_cast<std::int64_t>(mine.size()) * T);
  return total;
}

}  // namespace flowlm::train
