#include "eval/task.hpp"

#include <toml++/toml.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "data/prepare.hpp"
#include "data/shard.hpp"
#include "eval/pyregex.hpp"

namespace flowlm::eval {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kind_name(TaskKind kind) {
  switch (kind) {
    case TaskKind::multiple_choice:
      return "multiple_choice";
    case TaskKind::generate:
      return "generate";
    case TaskKind::loglikelihood_rolling:
      break;
  }
  return "loglikelihood_rolling";
}

namespace {

std::string where(const fs::path& file, const toml::node& n) {
  const auto& src = n.source();
  if (src.begin.line == 0) return file.string();
  return fmt::format("{}:{}:{}", file.string(), src.begin.line, src.begin.column);
}

std::string where_key(const fs::path& file, const toml::key& k) {
  const auto& src = k.source();
  if (src.begin.line == 0) return file.string();
  return fmt::format("{}:{}:{}", file.string(), src.begin.line, src.begin.column);
}

std::string shown(const toml::node& n) {
  std::ostringstream os;
  if (const auto* s = n.as_string())
    os << json(s->get()).dump();
  else
    n.visit([&](const auto& v) { os << toml::toml_formatter(v, toml::format_flags::none); });
  std::string t = os.str();
  std::replace(t.begin(), t.end(), '\n', ' ');
  return t.size() > 80 ? t.substr(0, 77) + "..." : t;
}

/// Typed reads of one table, with unknown-key detection: every key must be read exactly once
/// (`finish` names the others).
class TableReader {
 public:
  TableReader(const fs::path& file, const toml::table& t, std::string prefix)
      : file_(file), t_(t), prefix_(std::move(prefix)) {}

  const toml::node* node(const std::string& key) {
    seen_.insert(key);
    return t_.get(key);
  }
  [[noreturn]] void bad(const std::string& key, const toml::node& n, const std::string& want) const {
    fail<ConfigError>("{}: {}{} = {} must be {}", where(file_, n), prefix_, key, shown(n), want);
  }
  void str(const std::string& key, std::string& out) {
    if (const auto* n = node(key)) {
      if (!n->is_string()) bad(key, *n, "a string");
      out = n->as_string()->get();
    }
  }
  void integer(const std::string& key, std::int64_t& out, std::int64_t lo) {
    if (const auto* n = node(key)) {
      if (!n->is_integer()) bad(key, *n, "an integer");
      out = n->as_integer()->get();
      if (out < lo) bad(key, *n, fmt::format("an integer >= {}", lo));
    }
  }
  void boolean(const std::string& key, bool& out) {
    if (const auto* n = node(key)) {
      if (!n->is_boolean()) bad(key, *n, "true or false");
      out = n->as_boolean()->get();
    }
  }
  void strings(const std::string& key, std::vector<std::string>& out) {
    if (const auto* n = node(key)) {
      out.clear();
      if (n->is_string()) {
        out.push_back(n->as_string()->get());
        return;
      }
      const auto* a = n->as_array();
      if (!a) bad(key, *n, "an array of strings");
      for (const auto& e : *a) {
        if (!e.is_string()) bad(key, *n, "an array of strings");
        out.push_back(e.as_string()->get());
      }
    }
  }
  void choice(const std::string& key, std::string& out, const std::vector<std::string>& choices) {
    if (const auto* n = node(key)) {
      if (!n->is_string() ||
          std::find(choices.begin(), choices.end(), n->as_string()->get()) == choices.end())
        bad(key, *n, fmt::format("one of: {}", fmt::join(choices, ", ")));
      out = n->as_string()->get();
    }
  }
  void finish(const std::vector<std::string>& known_tables = {}) const {
    for (const auto& [k, n] : t_) {
      const std::string key(k.str());
      if (seen_.count(key) || std::find(known_tables.begin(), known_tables.end(), key) != known_tables.end())
        continue;
      std::vector<std::string> known(seen_.begin(), seen_.end());
      known.insert(known.end(), known_tables.begin(), known_tables.end());
      (void)n;
      fail<ConfigError>("{}: unknown key '{}{}' (known here: {})", where_key(file_, k), prefix_, key,
                        fmt::join(known, ", "));
    }
  }

 private:
  const fs::path& file_;
  const toml::table& t_;
  std::string prefix_;
  std::set<std::string> seen_;
};

const toml::table* subtable(const fs::path& file, const toml::table& root, const std::string& key) {
  const toml::node* n = root.get(key);
  if (!n) return nullptr;
  if (!n->is_table())
    fail<ConfigError>("{}: '{}' must be a table ([{}]), got {}", where(file, *n), key, key, shown(*n));
  return n->as_table();
}

fs::path relative_to(const fs::path& file, const std::string& p) {
  const fs::path path(p);
  return path.is_absolute() || file.parent_path().empty() ? path : file.parent_path() / path;
}

std::string json_type(const json& v) { return v.type_name(); }

// One item from one JSONL line; the fields the task's kind needs must be there.
Item parse_item(const TaskSpec& s, const json& j, const fs::path& file, std::int64_t line) {
  Item it;
  it.line = line;
  auto at = [&](const std::string& field) -> const json& {
    const auto f = j.find(field);
    if (f == j.end())
      fail<DataError>(
          "{}:{}: the item has no field \"{}\" ({} task {} reads it; set [fields] in {} if it is "
          "called otherwise)",
          file.string(), line, field, kind_name(s.kind), s.name, s.file.string());
    return *f;
  };
  auto text = [&](const std::string& field) {
    const json& v = at(field);
    if (v.is_string()) return v.get<std::string>();
    if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>());
    fail<DataError>("{}:{}: field \"{}\" must be a string, got {} {}", file.string(), line, field,
                    json_type(v), v.dump());
  };
  switch (s.kind) {
    case TaskKind::multiple_choice: {
      it.context = text(s.context_field);
      const json& c = at(s.choices_field);
      if (!c.is_array() || c.empty())
        fail<DataError>("{}:{}: field \"{}\" must be a non-empty array of strings, got {}", file.string(),
                        line, s.choices_field, c.dump());
      for (const auto& e : c) {
        if (!e.is_string())
          fail<DataError>("{}:{}: field \"{}\" must hold strings, got {} {}", file.string(), line,
                          s.choices_field, json_type(e), e.dump());
        it.choices.push_back(e.get<std::string>());
      }
      const json& g = at(s.gold_field);
      if (g.is_number_integer()) {
        it.gold = g.get<std::int64_t>();
      } else if (g.is_string()) {
        const auto f = std::find(it.choices.begin(), it.choices.end(), g.get<std::string>());
        it.gold = f == it.choices.end() ? -1 : f - it.choices.begin();
      } else {
        fail<DataError>("{}:{}: field \"{}\" must be a choice index or a choice's text, got {} {}",
                        file.string(), line, s.gold_field, json_type(g), g.dump());
      }
      if (it.gold < 0 || it.gold >= static_cast<std::int64_t>(it.choices.size()))
        fail<DataError>("{}:{}: field \"{}\" = {} is not one of the {} choices", file.string(), line,
                        s.gold_field, g.dump(), it.choices.size());
      break;
    }
    case TaskKind::generate:
      it.context = text(s.context_field);
      it.target = text(s.target_field);
      break;
    case TaskKind::loglikelihood_rolling:
      it.text = text(s.text_field);
      break;
  }
  return it;
}

std::vector<Item> read_items(const TaskSpec& s, const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail<IoError>("{}: cannot open the items of task {} ({})", file.string(), s.name, s.file.string());
  std::vector<Item> items;
  std::string line;
  std::int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object())
      fail<DataError>("{}:{}: not a JSON object (one item per line)", file.string(), n);
    items.push_back(parse_item(s, j, file, n));
  }
  if (in.bad()) fail<IoError>("{}: read error", file.string());
  if (items.empty()) fail<DataError>("{}: no items (task {} in {})", file.string(), s.name, s.file.string());
  return items;
}

}  // namespace

Task load_task(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail<IoError>("{}: task file not found or unreadable", file.string());
  std::ostringstream text;
  text << in.rdbuf();
  toml::table root;
  try {
    root = toml::parse(text.str(), file.string());
  } catch (const toml::parse_error& e) {
    fail<ConfigError>("{}:{}:{}: malformed TOML: {}", file.string(), e.source().begin.line,
                      e.source().begin.column, e.description());
  }
  Task task;
  TaskSpec& s = task.spec;
  s.file = file;
  s.name = file.stem().string();
  TableReader r(file, root, "");
  r.str("name", s.name);
  std::string kind;
  const toml::node* kind_node = root.get("kind");
  if (!kind_node)
    fail<ConfigError>("{}: the key 'kind' is missing (multiple_choice, generate or loglikelihood_rolling)",
                      file.string());
  r.choice("kind", kind, {"multiple_choice", "generate", "loglikelihood_rolling"});
  s.kind = kind == "generate"                ? TaskKind::generate
           : kind == "loglikelihood_rolling" ? TaskKind::loglikelihood_rolling
                                             : TaskKind::multiple_choice;
  std::string data, fewshot_data;
  if (!root.get("data"))
    fail<ConfigError>("{}: the key 'data' is missing (the JSONL file of items)", file.string());
  r.str("data", data);
  if (data.empty()) r.bad("data", *root.get("data"), "a JSONL file");
  s.data = relative_to(file, data);
  r.str("fewshot_data", fewshot_data);
  if (!fewshot_data.empty()) s.fewshot_data = relative_to(file, fewshot_data);
  r.str("template", s.prompt_template);
  if (const auto* n = root.get("template")) {
    try {
      (void)data::prompt_template(s.prompt_template);
    } catch (const ConfigError&) {
      r.bad("template", *n, "none, alpaca or a text with {prompt}");
    }
  }
  r.str("description", s.description);
  r.integer("num_fewshot", s.num_fewshot, 0);
  r.choice("fewshot_sampler", s.fewshot_sampler, {"random", "first_n"});
  r.integer("fewshot_seed", s.fewshot_seed, 0);
  r.str("target_delimiter", s.target_delimiter);
  r.str("fewshot_delimiter", s.fewshot_delimiter);
  if (s.kind == TaskKind::loglikelihood_rolling && s.num_fewshot != 0)
    r.bad("num_fewshot", *root.get("num_fewshot"), "0 for a loglikelihood_rolling task");

  if (const toml::table* f = subtable(file, root, "fields")) {
    TableReader fr(file, *f, "fields.");
    fr.str("context", s.context_field);
    fr.str("choices", s.choices_field);
    fr.str("gold", s.gold_field);
    fr.str("target", s.target_field);
    fr.str("text", s.text_field);
    fr.finish();
  }
  const bool generate = s.kind == TaskKind::generate;
  auto only_generate = [&](const char* key) {
    if (const toml::node* n = root.get(key); n && !generate)
      fail<ConfigError>("{}: [{}] applies to generate tasks only; this task is {}", where(file, *n), key,
                        kind);
  };
  only_generate("generation");
  only_generate("filter");
  only_generate("exact_match");
  if (const toml::table* g = subtable(file, root, "generation")) {
    TableReader gr(file, *g, "generation.");
    gr.strings("until", s.until);
    gr.integer("max_new_tokens", s.max_new_tokens, 1);
    gr.finish();
  }
  if (const toml::node* n = root.get("filter")) {
    const auto* arr = n->as_array();
    if (!arr || !arr->is_array_of_tables())
      fail<ConfigError>("{}: 'filter' must be an array of tables ([[filter]] sections), got {}",
                        where(file, *n), shown(*n));
    std::set<std::string> names;
    for (const auto& e : *arr) {
      AnswerFilter af;
      TableReader fr(file, *e.as_table(), "filter.");
      fr.str("name", af.name);
      fr.str("regex", af.regex);
      fr.integer("group_select", af.group_select, std::numeric_limits<std::int64_t>::min());
      fr.str("fallback", af.fallback);
      fr.boolean("strip_leading_whitespace", af.strip_leading_whitespace);
      fr.finish();
      if (!af.regex.empty()) PyRegex(af.regex, fmt::format("{}: filter '{}' regex", where(file, e), af.name));
      if (!names.insert(af.name).second)
        fail<ConfigError>("{}: two filters are named '{}'; names must differ (each gives a metric)",
                          where(file, e), af.name);
      s.filters.push_back(std::move(af));
    }
  }
  if (generate && s.filters.empty()) s.filters.push_back(AnswerFilter{});
  if (const toml::table* m = subtable(file, root, "exact_match")) {
    TableReader mr(file, *m, "exact_match.");
    mr.boolean("ignore_case", s.exact_match.ignore_case);
    mr.boolean("ignore_punctuation", s.exact_match.ignore_punctuation);
    mr.boolean("ignore_numbers", s.exact_match.ignore_numbers);
    mr.strings("regexes_to_ignore", s.exact_match.regexes_to_ignore);
    mr.finish();
    for (const auto& re : s.exact_match.regexes_to_ignore)
      PyRegex(re, fmt::format("{}: exact_match.regexes_to_ignore", file.string()));
  }
  r.finish({"fields", "generation", "filter", "exact_match"});

  task.items = read_items(s, s.data);
  if (!s.fewshot_data.empty()) task.fewshot_pool = read_items(s, s.fewshot_data);
  const std::size_t pool = task.pool_is_items() ? task.items.size() - 1 : task.fewshot_pool.size();
  if (static_cast<std::size_t>(s.num_fewshot) > pool)
    fail<ConfigError>("{}: num_fewshot = {} but the few-shot pool ({}) has only {} other items",
                      file.string(), s.num_fewshot,
                      task.pool_is_items() ? s.data.string() : s.fewshot_data.string(), pool);
  return task;
}

std::vector<fs::path> expand_task_files(const std::vector<std::string>& specs, const std::string& key) {
  std::vector<fs::path> out;
  for (const auto& spec : specs) {
    std::vector<fs::path> found;
    try {
      found = data::expand_paths({spec});
    } catch (const IoError&) {
      fail<IoError>("{}: {} matches no task file", key, spec);
    }
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

}  // namespace flowlm::eval
