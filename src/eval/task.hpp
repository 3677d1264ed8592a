// Benchmark task files, shaped like lm-evaluation-harness tasks: a TOML file that says how to
// score, beside a JSONL file of items (one JSON object per line). Three kinds:
//   multiple_choice         context, choices, gold  -> acc, acc_norm (summed log-likelihood of
//                           target_delimiter + choice; acc_norm divides by the choice's length)
//   generate                context, target         -> exact_match per answer filter (greedy
//                           decoding until a stop string or max_new_tokens; regex extraction)
//   loglikelihood_rolling   text                    -> word_perplexity, byte_perplexity, bits_per_byte
// The README's "Benchmark tasks" section documents every key and how to convert lm-eval tasks.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace flowlm::eval {

enum class TaskKind { multiple_choice, generate, loglikelihood_rolling };
/// \brief "multiple_choice", "generate", "loglikelihood_rolling".
const char* kind_name(TaskKind kind);

/// \brief One answer filter of a generate task (lm-eval's filter_list entry): the response, or
/// with a regex the group_select-th match (its first non-empty group), else `fallback`.
struct AnswerFilter {
  std::string name = "none";
  std::string regex;              ///< empty: the whole response
  std::int64_t group_select = 0;  ///< which match; negative counts from the end (-1: the last)
  std::string fallback = "[invalid]";
  bool strip_leading_whitespace = false;  ///< lm-eval's remove_whitespace, after the regex
};

/// \brief How exact_match compares (lm-eval's exact_match arguments): regexes_to_ignore are
/// removed from response and target, then case, punctuation and digits as asked.
struct ExactMatchOptions {
  bool ignore_case = false, ignore_punctuation = false, ignore_numbers = false;
  std::vector<std::string> regexes_to_ignore;
};

/// \brief A task file, every key resolved (defaults are lm-eval's).
struct TaskSpec {
  std::filesystem::path file;  ///< the .toml
  std::string name;            ///< default: the file's stem
  TaskKind kind = TaskKind::multiple_choice;
  std::filesystem::path data;            ///< JSONL items (relative paths: to the task file)
  std::filesystem::path fewshot_data;    ///< JSONL few-shot pool; empty = the task's own items
  std::string prompt_template = "none";  ///< key "template": prepare's, around each context
  std::string description;               ///< text before the few-shot examples
  std::int64_t num_fewshot = 0;
  std::string fewshot_sampler = "random";  ///< random (seeded per item) | first_n (lm-eval's)
  std::int64_t fewshot_seed = 1234;
  std::string target_delimiter = " ";
  std::string fewshot_delimiter = "\n\n";
  std::string context_field = "context", choices_field = "choices", gold_field = "gold",
              target_field = "target", text_field = "text";
  std::vector<std::string> until;     ///< generate: stop strings (the end-of-text token always stops)
  std::int64_t max_new_tokens = 256;  ///< generate: lm-eval's max_gen_toks
  std::vector<AnswerFilter> filters;  ///< generate: one metric each; default: one "none" filter
  ExactMatchOptions exact_match;
};

/// \brief One item of a task file (the fields its kind uses).
struct Item {
  std::string context;               ///< multiple_choice, generate
  std::vector<std::string> choices;  ///< multiple_choice
  std::int64_t gold = -1;            ///< multiple_choice: index into choices
  std::string target;                ///< generate
  std::string text;                  ///< loglikelihood_rolling
  std::int64_t line = 0;             ///< 1-based line in its JSONL file, for messages
};

/// \brief A task with its items and its few-shot pool.
struct Task {
  TaskSpec spec;
  std::vector<Item> items;
  std::vector<Item> fewshot_pool;  ///< empty when the pool is `items` itself
  bool pool_is_items() const { return spec.fewshot_data.empty(); }
};

/// \brief Reads a task file and its JSONL data. ConfigError naming the file, line, key and value for
/// an unknown key, a wrong type or value, or a regex that does not compile; IoError for files that
/// cannot be read; DataError naming file:line and the field for an item without a field its kind
/// needs, of the wrong type, or a gold outside the choices.
Task load_task(const std::filesystem::path& file);

/// \brief Task files from paths and globs (sorted within a glob), in the order given. IoError naming
/// `key` and the entry when nothing matches.
std::vector<std::filesystem::path> expand_task_files(const std::vector<std::string>& specs,
                                                     const std::string& key);

}  // namespace flowlm::eval
