// Loss evaluation shared by training (validation), the averaging experiments and eval.
#pragma once

#include <vector>

#include "comm/comm.hpp"
#include "core/types.hpp"
#include "data/loader.hpp"
#include "model/gpt.hpp"

namespace flowlm::train {

/// \brief Sum of per-token losses and the number of tokens they cover.
struct LossSum {
  double sum = 0;
  index_t tokens = 0;
  double mean() const { return tokens > 0 ? sum / static_cast<double>(tokens) : 0.0; }
};

/// \brief Mean next-token loss of `gpt` over the first `max_windows` windows of `data` (all
/// when <= 0), split across the ranks of `world` in contiguous blocks and run forward only in
/// batches of `micro_batch`. Collective; the same windows whatever the rank count.
LossSum evaluate_windows(model::GPT& gpt, const data::TokenDataset& data, index_t max_windows,
                         index_t micro_batch, const comm::Communicator& world);

}  // namespace flowlm::train
