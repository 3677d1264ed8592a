// Prompts of task items as lm-eval builds them: description, then num_fewshot labelled examples
// (text + target_delimiter + target + fewshot_delimiter each), then the item's own text; the text
// of an item is its context inside the task's template (prepare's templates).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eval/task.hpp"

namespace flowlm::eval {

/// \brief The few-shot examples of item `index` of task.items: indices into task.items when the pool
/// is the task's own items (never `index` itself), else into task.fewshot_pool. "first_n": the first
/// n of the pool (lm-eval's first_n sampler); "random": n distinct items drawn from a stream seeded by
/// (seed, index) alone, so an item's prompt does not depend on which other items run or where.
std::vector<std::size_t> fewshot_indices(const Task& task, std::size_t index, std::int64_t num_fewshot,
                                         std::int64_t seed);

/// \brief An item's text: its context in the task's template.
std::string item_text(const Task& task, const Item& item);
/// \brief An item's target as a few-shot example shows it: choices[gold] or target.
std::string item_target(const Task& task, const Item& item);

/// \brief The full context of item `index`: description + examples + item_text (empty for rolling tasks).
std::string build_context(const Task& task, std::size_t index, std::int64_t num_fewshot, std::int64_t seed);

/// \brief ConfigError naming `what` when the pool cannot give `num_fewshot` examples.
void check_fewshot(const Task& task, std::int64_t num_fewshot, const std::string& what);

}  // namespace flowlm::eval
