// Inheritune: a small GPT made of the first k transformer blocks (or a chosen list) of a larger
// one, plus whichever of the embeddings, final norm and LM head the job asks for. Tensors that
// are not copied keep the small model's random init (the reference leaves wpe and ln_f random).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "comm/comm.hpp"
#include "config/config.hpp"
#include "model/transformer.hpp"
#include "train/evaluate.hpp"

namespace flowlm::train {

/// \brief The source block indices to copy: `inherit.blocks` when set, else 0..layers-1
/// (layers = 0: half the source's blocks, at least one). ConfigError naming the key for an
/// index outside the source, a repeated index, or more blocks than the source has.
std::vector<std::int64_t> inherit_block_list(const config::InheritConfig& cfg, std::int64_t source_layers);

/// \brief A small model built from a larger checkpoint.
struct Inherited {
  model::Transformer gpt;                ///< the small model (n_layer = blocks.size())
  config::JobConfig job;                 ///< the job recorded in the output (model.* = the small shape)
  std::vector<std::int64_t> blocks;      ///< source block index of each small block
  std::vector<std::string> copied;       ///< small-model tensor names copied from the source
  std::vector<std::string> initialized;  ///< small-model tensor names left at random init
};

/// \brief Builds the small model: random init from `seed`, then the selected tensors are read
/// from `cfg.from` (block blocks[i] of the source becomes block i). `job` supplies n_head when
/// the source has no readable config_toml and is the recorded job otherwise. Any rank, no
/// collectives. ConfigError when token_embedding != head for a source with a tied head (one
/// tensor). Works for every family: blocks, embeddings, final norm and head by their role.
Inherited inherit_model(const config::InheritConfig& cfg, const config::JobConfig& job, std::uint64_t seed);

/// \brief `flowlm inherit`: builds the small model from `job.inherit` and writes it (model
/// tensors only, no optimizer state) to inherit.output, or `<run.dir>/inherited.h5` when that
/// is empty. Attrs: kind = "inherit", inherit_source, inherit_blocks, inherit_copied. Collective.
/// Returns the written path.
std::filesystem::path run_inherit(const config::JobConfig& job, const comm::Communicator& world);

}  // namespace flowlm::train
