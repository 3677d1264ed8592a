#include "data/synthetic.hpp"

#include <algorithm>
#include <random>

#include "core/error.hpp"
#include "core/random.hpp"
#include "data/shard.hpp"

namespace flowlm::data {

namespace {

/// Uniform in [lo, hi] by rejection: the same on every standard library.
std::int64_t uniform(std::mt19937_64& rng, std::int64_t lo, std::int64_t hi) {
  const auto range = static_cast<std::uint64_t>(hi - lo) + 1;
  const std::uint64_t threshold = (0 - range) % range;
  for (;;) {
    const std::uint64_t x = rng();
    if (x >= threshold) return lo + static_cast<std::int64_t>(x % range);
  }
}

std::string random_string(std::mt19937_64& rng, const SyntheticOptions& o, const char* alphabet, int size) {
  const auto len = uniform(rng, o.min_len, o.max_len);
  std::string s;
  for (std::int64_t i = 0; i < len; ++i) s += alphabet[uniform(rng, 0, size - 1)];
  return s;
}

std::int64_t random_number(std::mt19937_64& rng, index_t digits) {
  std::int64_t hi = 1;
  for (index_t i = 0; i < digits; ++i) hi *= 10;
  return uniform(rng, 0, hi - 1);
}

PromptAnswer make_one(const std::string& task, std::mt19937_64& rng, const SyntheticOptions& o) {
  if (task == "copy") {
    const std::string s = random_string(rng, o, "abcdefgh", 8);
    return {"cpy:" + s + "=", s};
  }
  if (task == "reverse") {
    const std::string s = random_string(rng, o, "abcdefgh", 8);
    return {"rev:" + s + "=", std::string(s.rbegin(), s.rend())};
  }
  if (task == "sort") {
    const std::string s = random_string(rng, o, "0123456789", 10);
    std::string t = s;
    std::sort(t.begin(), t.end());
    return {"srt:" + s + "=", t};
  }
  if (task == "add") {
    const auto a = random_number(rng, o.max_digits), b = random_number(rng, o.max_digits);
    return {fmt::format("add:{}+{}=", a, b), std::to_string(a + b)};
  }
  if (task == "multiply") {
    const auto a = random_number(rng, o.max_digits), b = random_number(rng, 1);
    return {fmt::format("mul:{}*{}=", a, b), std::to_string(a * b)};
  }
  fail<ConfigError>("unknown synthetic task \"{}\" (choices: {})", task,
                    fmt::join(synthetic_task_names(), ", "));
}

}  // namespace

const std::vector<std::string>& synthetic_task_names() {
  static const std::vector<std::string> names = {"copy", "reverse", "sort", "add", "multiply"};
  return names;
}

std::vector<PromptAnswer> synthetic_samples(const std::string& task, index_t n, std::uint64_t seed,
                                            Split split, const SyntheticOptions& opts) {
  if (n < 0) fail<ConfigError>("synthetic task \"{}\": n = {} must be >= 0", task, n);
  if (opts.min_len < 1 || opts.max_len < opts.min_len || opts.max_digits < 1 || opts.heldout_percent < 1 ||
      opts.heldout_percent > 99)
    fail<ConfigError>(
        "synthetic options: need 1 <= min_len <= max_len, max_digits >= 1, heldout_percent in [1, 99]");
  std::mt19937_64 rng(seed ^ fnv1a(task));
  std::vector<PromptAnswer> out;
  const index_t max_tries = 1000 * (n + 10);
  for (index_t tries = 0; static_cast<index_t>(out.size()) < n; ++tries) {
    if (tries > max_tries)
      fail<ConfigError>(
          "synthetic task \"{}\": could not draw {} samples of this split (the problem space is too "
          "small; raise max_len or max_digits)",
          task, n);
    PromptAnswer pa = make_one(task, rng, opts);
    const bool heldout = static_cast<int>(fnv1a(pa.prompt) % 100) < opts.heldout_percent;
    if (heldout == (split == Split::heldout)) out.push_back(std::move(pa));
  }
  return out;
}

std::vector<PromptAnswer> synthetic_mixture(const std::vector<std::string>& tasks, index_t n_per_task,
                                            std::uint64_t seed, Split split, const SyntheticOptions& opts) {
  std::vector<std::vector<PromptAnswer>> per;
  for (const auto& t : tasks) per.push_back(synthetic_samples(t, n_per_task, seed, split, opts));
  std::vector<PromptAnswer> out;
  for (index_t i = 0; i < n_per_task; ++i)
    for (auto& v : per) out.push_back(v[static_cast<std::size_t>(i)]);
  return out;
}

std::vector<PromptAnswer> synthetic_finetune_set(const std::string& new_task, index_t n_new,
                                                 const std::vector<std::string>& known, index_t known_every,
                                                 std::uint64_t seed, const SyntheticOptions& opts) {
  if (known_every == 1 || known_every < 0 || (known_every > 1 && known.empty()))
    fail<ConfigError>(
        "synthetic fine-tuning set: known_every = {} must be 0 (none) or >= 2, with known tasks",
        known_every);
  std::vector<PromptAnswer> out = synthetic_samples(new_task, n_new, seed, Split::train, opts);
  if (known_every == 0) return out;
  const auto n_tasks = static_cast<index_t>(known.size());
  const index_t n_known = n_new / (known_every - 1);
  const auto mix = synthetic_mixture(known, (n_known + n_tasks - 1) / n_tasks, seed + 1, Split::train, opts);
  for (index_t i = 0; i < n_known; ++i)
    out.insert(out.begin() + i * known_every, mix[static_cast<std::size_t>(i)]);
  return out;
}

std::vector<std::uint16_t> pretraining_tokens(const std::vector<PromptAnswer>& samples,
                                              const Tokenizer& tok) {
  std::vector<std::uint16_t> out{static_cast<std::uint16_t>(tok.eot())};
  for (const auto& s : samples) {
    for (const auto t : tok.encode(s.prompt + s.answer)) out.push_back(static_cast<std::uint16_t>(t));
    out.push_back(static_cast<std::uint16_t>(tok.eot()));
  }
  return out;
}

void write_pretraining_shard(const std::filesystem::path& path, const std::vector<PromptAnswer>& samples,
                             const Tokenizer& tok) {
  write_shard(path, pretraining_tokens(samples, tok));
}

SampleSet write_synthetic_sample_set(const std::filesystem::path& path,
                                     const std::vector<PromptAnswer>& samples, const Tokenizer& tok,
                                     index_t block_size) {
  SampleSet s;
  build_samples(samples, tok, block_size, Overlong::error, path.string(), s);
  write_sample_set(path, s, "synthetic");
  return s;
}

}  // namespace flowlm::data
