#include "eval/prompt.hpp"

#include <algorithm>
#include <numeric>

#include "core/error.hpp"
#include "core/random.hpp"
#include "data/prepare.hpp"

namespace flowlm::eval {

namespace {

// Uniform in [0, n) without modulo bias.
std::uint64_t below(std::uint64_t& state, std::uint64_t n) {
  const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % n);
  for (;;) {
    const std::uint64_t x = splitmix64(state);
    if (x < limit) return x % n;
  }
}

}  // namespace

std::vector<std::size_t> fewshot_indices(const Task& task, std::size_t index, std::int64_t num_fewshot,
                                         std::int64_t seed) {
  if (num_fewshot <= 0) return {};
  const bool own = task.pool_is_items();
  const std::size_t pool = own ? task.items.size() : task.fewshot_pool.size();
  const auto n = static_cast<std::size_t>(num_fewshot);
  // One more than needed from the task's own items, so that dropping the item itself leaves n
  // (lm-eval draws n + 1 when the few-shot split is the evaluated one).
  const std::size_t draw = std::min(pool, own ? n + 1 : n);
  std::vector<std::size_t> picked;
  if (task.spec.fewshot_sampler == "first_n") {
    picked.resize(draw);
    std::iota(picked.begin(), picked.end(), std::size_t{0});
  } else {
    // Distinct indices in draw order (rejection; draw is a handful): O(draw^2), not O(pool).
    std::uint64_t state =
        static_cast<std::uint64_t>(seed) * 0x100000001B3ull ^ (index + 1) * 0x9E3779B97F4A7C15ull;
    while (picked.size() < draw) {
      const auto j = static_cast<std::size_t>(below(state, pool));
      if (std::find(picked.begin(), picked.end(), j) == picked.end()) picked.push_back(j);
    }
  }
  std::vector<std::size_t> out;
  for (const std::size_t p : picked) {
    if (own && p == index) continue;
    if (out.size() < n) out.push_back(p);
  }
  return out;
}

std::string item_text(const Task& task, const Item& item) {
  return data::apply_prompt_template(data::prompt_template(task.spec.prompt_template), item.context);
}

std::string item_target(const Task& task, const Item& item) {
  if (task.spec.kind == TaskKind::multiple_choice) return item.choices[static_cast<std::size_t>(item.gold)];
  return item.target;
}

std::string build_context(const Task& task, std::size_t index, std::int64_t num_fewshot, std::int64_t seed) {
  if (task.spec.kind == TaskKind::loglikelihood_rolling) return {};
  const TaskSpec& s = task.spec;
  std::string out = s.description;
  for (const std::size_t j : fewshot_indices(task, index, num_fewshot, seed)) {
    const Item& ex = task.pool_is_items() ? task.items[j] : task.fewshot_pool[j];
    out += item_text(task, ex);
    const std::string target = item_target(task, ex);
    // As lm-eval: an example without a target is its text alone, with no delimiters.
    if (!target.empty()) out += s.target_delimiter + target + s.fewshot_delimiter;
  }
  return out + item_text(task, task.items[index]);
}

void check_fewshot(const Task& task, std::int64_t num_fewshot, const std::string& what) {
  if (task.spec.kind == TaskKind::loglikelihood_rolling && num_fewshot != 0)
    fail<ConfigError>("{} = {}: task {} ({}) is loglikelihood_rolling, which takes no few-shot examples",
                      what, num_fewshot, task.spec.name, task.spec.file.string());
  const std::size_t pool = task.pool_is_items() ? task.items.size() - 1 : task.fewshot_pool.size();
  if (num_fewshot > 0 && static_cast<std::size_t>(num_fewshot) > pool)
    fail<ConfigError>("{} = {}: the few-shot pool of task {} ({}) has only {} items", what, num_fewshot,
                      task.spec.name, task.spec.file.string(), pool);
}

}  // namespace flowlm::eval
