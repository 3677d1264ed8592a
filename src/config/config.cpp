// The one generic engine over the schema tables: TOML -> JobConfig with type, range and
// unknown-key checks, `--set` overrides, and JobConfig -> TOML (resolved and reference).
#include "config/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include "config/schema.hpp"
#include "core/error.hpp"

namespace flowlm::config {

namespace {

template <class>
[[maybe_unused]] inline constexpr bool kAlwaysFalse = false;  // for static_assert in if constexpr

// ---- formatting ------------------------------------------------------------------------

/// A float as TOML: shortest round-trip digits, always recognisably a float.
std::string format_float(double d) {
  std::string s = fmt::format("{}", d);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  return s;
}

std::string quote(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f)
          out += fmt::format("\\u{:04X}", static_cast<unsigned>(u));
        else
          out += ch;
    }
  }
  return out + "\"";
}

std::string format_tau(const TauSpec& t) {
  switch (t.kind) {
    case TauSpec::Kind::median:
      return quote("median");
    case TauSpec::Kind::value:
      return format_float(t.value);
    case TauSpec::Kind::quantile:
      break;
  }
  return fmt::format("{{ quantile = {} }}", format_float(t.value));
}

std::string format_value(const FieldPtr& p) {
  return std::visit(
      [](const auto* v) -> std::string {
        using T = std::decay_t<decltype(*v)>;
        if constexpr (std::is_same_v<T, std::int64_t>) {
          return fmt::format("{}", *v);
        } else if constexpr (std::is_same_v<T, double>) {
          return format_float(*v);
        } else if constexpr (std::is_same_v<T, bool>) {
          return *v ? "true" : "false";
        } else if constexpr (std::is_same_v<T, std::string>) {
          return quote(*v);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::string out = "[";
          for (std::size_t i = 0; i < v->size(); ++i) out += (i ? ", " : "") + quote((*v)[i]);
          return out + "]";
        } else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>) {
          return fmt::format("[{}]", fmt::join(*v, ", "));
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          std::string out = "[";
          for (std::size_t i = 0; i < v->size(); ++i) out += (i ? ", " : "") + format_float((*v)[i]);
          return out + "]";
        } else if constexpr (std::is_same_v<T, TauSpec>) {
          return format_tau(*v);
        } else {
          static_assert(kAlwaysFalse<T>, "unhandled field type");
        }
      },
      p);
}

const char* type_name(const FieldPtr& p) {
  static const char* const names[] = {"integer",          "float",
                                      "boolean",          "string",
                                      "array of strings", "array of integers",
                                      "array of numbers", "\"median\", a number or {quantile = q}"};
  return names[p.index()];
}

/// "an integer", for "must be an integer".
std::string expected_name(const FieldPtr& p) {
  if (std::holds_alternative<TauSpec*>(p)) return type_name(p);
  const std::string t = p.index() == 1 ? "number" : type_name(p);
  return (t[0] == 'a' || t[0] == 'i' ? "an " : "a ") + t;
}

const char* node_type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
    case toml::node_type::array:
      return "array";
    case toml::node_type::table:
      return "table";
    default:
      return "value";
  }
}

/// `string "ten"`, `float 2.5`, `array [1, 2]`: what a user wrote, for error messages.
std::string describe_node(const toml::node& n) {
  std::ostringstream os;
  if (const auto* s = n.as_string())
    os << quote(s->get());
  else
    n.visit([&](const auto& v) { os << toml::toml_formatter(v, toml::format_flags::none); });
  std::string text = os.str();
  std::replace(text.begin(), text.end(), '\n', ' ');
  if (text.size() > 80) text = text.substr(0, 77) + "...";
  return fmt::format("{} {}", node_type_name(n.type()), text);
}

std::string where(const std::string& origin, const toml::source_region& src) {
  if (src.begin.line == 0) return origin;
  return fmt::format("{}:{}:{}", origin, src.begin.line, src.begin.column);
}

std::string describe_rule(const Rule& r) {
  std::vector<std::string> parts;
  if (r.lo) parts.push_back(fmt::format("{} {}", r.lo_open ? ">" : ">=", *r.lo));
  if (r.hi) parts.push_back(fmt::format("{} {}", r.hi_open ? "<" : "<=", *r.hi));
  if (!r.choices.empty()) parts.push_back(fmt::format("one of: {}", fmt::join(r.choices, ", ")));
  if (r.nonempty) parts.push_back("non-empty");
  return fmt::format("{}", fmt::join(parts, " and "));
}

// ---- unknown keys ----------------------------------------------------------------------

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string leaf(const std::string& key) { return key.substr(key.rfind('.') + 1); }

/// " (did you mean 'optim.lr'?)": the same key name in another section first (a key put in
/// the wrong table), else the closest candidate by edit distance when it is close enough.
std::string suggestion(const std::string& bad, const std::vector<std::string>& candidates) {
  for (const auto& c : candidates)
    if (c != bad && leaf(c) == leaf(bad)) return fmt::format(" (did you mean '{}'?)", c);
  const std::string* best = nullptr;
  std::size_t best_d = std::max<std::size_t>(2, bad.size() / 4) + 1;
  for (const auto& c : candidates) {
    const std::size_t d = edit_distance(bad, c);
    if (d < best_d) best_d = d, best = &c;
  }
  return best ? fmt::format(" (did you mean '{}'?)", *best) : std::string();
}

std::vector<std::string> section_names(const Schema& s) {
  std::vector<std::string> out;
  for (const auto& sec : s.sections()) out.push_back(sec.name);
  return out;
}

std::vector<std::string> field_paths(const Schema& s) {
  std::vector<std::string> out;
  for (const auto& f : s.fields()) out.push_back(f.path());
  return out;
}

const Field* find_field(const Schema& s, const std::string& path) {
  for (const auto& f : s.fields())
    if (f.path() == path) return &f;
  return nullptr;
}

/// The table of a (possibly dotted) section name, "finetune.lora" -> root.finetune.lora; null when absent.
const toml::table* find_section(const toml::table& root, const std::string& name) {
  const toml::table* t = &root;
  std::size_t begin = 0;
  while (t) {
    const std::size_t dot = name.find('.', begin);
    t = t->get_as<toml::table>(
        name.substr(begin, dot == std::string::npos ? std::string::npos : dot - begin));
    if (dot == std::string::npos) return t;
    begin = dot + 1;
  }
  return nullptr;
}

/// The table of a section, created (with its parents) when absent.
toml::table& ensure_section(toml::table& root, const std::string& name) {
  toml::table* t = &root;
  std::size_t begin = 0;
  for (;;) {
    const std::size_t dot = name.find('.', begin);
    const std::string part = name.substr(begin, dot == std::string::npos ? std::string::npos : dot - begin);
    if (!t->contains(part)) t->insert(part, toml::table{});
    t = t->get_as<toml::table>(part);  // a table: check_known_keys ran first
    if (dot == std::string::npos) return *t;
    begin = dot + 1;
  }
}

/// Every key of section `name` (table `table`) must be a field or a known sub-section.
void check_section_keys(const toml::table& table, const std::string& name, const Schema& s,
                        const std::vector<std::string>& sections, const std::vector<std::string>& paths,
                        const std::string& origin) {
  for (const auto& [sub, subnode] : table) {
    const std::string path = name + "." + std::string(sub.str());
    if (find_field(s, path)) continue;
    if (std::find(sections.begin(), sections.end(), path) != sections.end()) {
      const auto* inner = subnode.as_table();
      if (!inner)
        fail<ConfigError>("{}: '{}' must be a table ([{}] or {} = {{...}}), got {}",
                          where(origin, subnode.source()), path, path, path, describe_node(subnode));
      check_section_keys(*inner, path, s, sections, paths, origin);
      continue;
    }
    std::vector<std::string> all = paths;
    all.insert(all.end(), sections.begin(), sections.end());
    fail<ConfigError>("{}: unknown key '{}'{}", where(origin, sub.source()), path, suggestion(path, all));
  }
}

/// Every key in the file must be a known section holding known keys.
void check_known_keys(const toml::table& root, const Schema& s, const std::string& origin) {
  const auto sections = section_names(s);
  const auto paths = field_paths(s);
  for (const auto& [k, node] : root) {
    const std::string name(k.str());
    if (std::find(sections.begin(), sections.end(), name) == sections.end()) {
      if (node.is_table())
        fail<ConfigError>("{}: unknown section '{}'{}", where(origin, k.source()), name,
                          suggestion(name, sections));
      std::vector<std::string> all = paths;
      all.insert(all.end(), sections.begin(), sections.end());
      fail<ConfigError>("{}: unknown key '{}'{}", where(origin, k.source()), name, suggestion(name, all));
    }
    const auto* table = node.as_table();
    if (!table)
      fail<ConfigError>("{}: '{}' must be a table ([{}]), got {}", where(origin, node.source()), name, name,
                        describe_node(node));
    check_section_keys(*table, name, s, sections, paths, origin);
  }
}

// ---- reading typed values --------------------------------------------------------------

struct ReadCtx {
  std::string prefix;  // "job.toml:3:5" or "--set optim.lr"
  std::string key;     // "optim.lr"
  const toml::node& node;
  const Rule& rule;
};

[[noreturn]] void type_error(const ReadCtx& c, const FieldPtr& p) {
  fail<ConfigError>("{}: {} must be {}, got {}", c.prefix, c.key, expected_name(p), describe_node(c.node));
}

void check_number(const ReadCtx& c, const std::string& key, double v, const std::string& shown) {
  if (!std::isfinite(v)) fail<ConfigError>("{}: {} = {} is not a finite number", c.prefix, key, shown);
  const Rule& r = c.rule;
  const bool lo_ok = !r.lo || (r.lo_open ? v > *r.lo : v >= *r.lo);
  const bool hi_ok = !r.hi || (r.hi_open ? v < *r.hi : v <= *r.hi);
  if (!lo_ok || !hi_ok)
    fail<ConfigError>("{}: {} = {} is out of range (must be {})", c.prefix, key, shown, describe_rule(r));
}

void check_string(const ReadCtx& c, const std::string& key, const std::string& v) {
  const Rule& r = c.rule;
  if (r.nonempty && v.empty()) fail<ConfigError>("{}: {} = \"\" must not be empty", c.prefix, key);
  if (!r.choices.empty() && std::find(r.choices.begin(), r.choices.end(), v) == r.choices.end())
    fail<ConfigError>("{}: {} = {} is not one of: {}", c.prefix, key, quote(v), fmt::join(r.choices, ", "));
}

/// flow.tau: "median", a positive number, or an inline table {quantile = q} with q in [0, 1].
void read_tau(const ReadCtx& c, const FieldPtr& p, TauSpec& out) {
  const toml::node& n = c.node;
  if (const auto* s = n.as_string()) {
    if (s->get() != "median")
      fail<ConfigError>("{}: {} = {} is not understood: use \"median\", a number > 0 or {{quantile = q}}",
                        c.prefix, c.key, quote(s->get()));
    out = TauSpec{};
    return;
  }
  if (n.is_integer() || n.is_floating_point()) {
    const double v =
        n.is_integer() ? static_cast<double>(n.as_integer()->get()) : n.as_floating_point()->get();
    if (!std::isfinite(v) || v <= 0)
      fail<ConfigError>("{}: {} = {} must be a finite number > 0", c.prefix, c.key, format_float(v));
    out = TauSpec{TauSpec::Kind::value, v};
    return;
  }
  const auto* t = n.as_table();
  if (!t) type_error(c, p);
  const toml::node* q = t->get("quantile");
  if (t->size() != 1 || !q || !(q->is_integer() || q->is_floating_point()))
    fail<ConfigError>("{}: {} must be {{quantile = q}} with one number q, got {}", c.prefix, c.key,
                      describe_node(n));
  const double v =
      q->is_integer() ? static_cast<double>(q->as_integer()->get()) : q->as_floating_point()->get();
  if (!(v >= 0 && v <= 1))
    fail<ConfigError>("{}: {}.quantile = {} is out of range (must be in [0, 1])", c.prefix, c.key,
                      format_float(v));
  out = TauSpec{TauSpec::Kind::quantile, v};
}

void read_field(const ReadCtx& c, const FieldPtr& p) {
  std::visit(
      [&](auto* out) {
        using T = std::decay_t<decltype(*out)>;
        const toml::node& n = c.node;
        if constexpr (std::is_same_v<T, std::int64_t>) {
          if (!n.is_integer()) type_error(c, p);
          *out = n.as_integer()->get();
          check_number(c, c.key, static_cast<double>(*out), fmt::format("{}", *out));
        } else if constexpr (std::is_same_v<T, double>) {
          if (n.is_integer())
            *out = static_cast<double>(n.as_integer()->get());
          else if (n.is_floating_point())
            *out = n.as_floating_point()->get();
          else
            type_error(c, p);
          check_number(c, c.key, *out, format_float(*out));
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!n.is_boolean()) type_error(c, p);
          *out = n.as_boolean()->get();
        } else if constexpr (std::is_same_v<T, std::string>) {
          if (!n.is_string()) type_error(c, p);
          *out = n.as_string()->get();
          check_string(c, c.key, *out);
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          out->clear();
          if (n.is_string()) {  // a single path is a one-element list
            out->push_back(n.as_string()->get());
            return;
          }
          const auto* arr = n.as_array();
          if (!arr) type_error(c, p);
          for (const auto& e : *arr) {
            if (!e.is_string()) type_error(c, p);
            out->push_back(e.as_string()->get());
          }
        } else if constexpr (std::is_same_v<T, std::vector<std::int64_t>>) {
          out->clear();
          const auto* arr = n.as_array();
          if (!arr) type_error(c, p);
          for (const auto& e : *arr) {
            if (!e.is_integer()) type_error(c, p);
            out->push_back(e.as_integer()->get());
            check_number(c, fmt::format("{}[{}]", c.key, out->size() - 1), static_cast<double>(out->back()),
                         fmt::format("{}", out->back()));
          }
        } else if constexpr (std::is_same_v<T, std::vector<double>>) {
          out->clear();
          const auto* arr = n.as_array();
          if (!arr) type_error(c, p);
          for (const auto& e : *arr) {
            if (e.is_integer())
              out->push_back(static_cast<double>(e.as_integer()->get()));
            else if (e.is_floating_point())
              out->push_back(e.as_floating_point()->get());
            else
              type_error(c, p);
            check_number(c, fmt::format("{}[{}]", c.key, out->size() - 1), out->back(),
                         format_float(out->back()));
          }
        } else if constexpr (std::is_same_v<T, TauSpec>) {
          read_tau(c, p, *out);
        } else {
          static_assert(kAlwaysFalse<T>, "unhandled field type");
        }
      },
      p);
}

// ---- overrides -------------------------------------------------------------------------

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

/// Puts one "section.key=value" into the parsed tree; returns the dotted key.
std::string apply_override(toml::table& root, const Schema& s, const std::string& spec) {
  const auto eq = spec.find('=');
  if (eq == std::string::npos)
    fail<ConfigError>("--set {}: expected section.key=value, got {}", trim(spec), quote(spec));
  const std::string key = trim(spec.substr(0, eq));
  const std::string rhs = trim(spec.substr(eq + 1));
  const Field* f = find_field(s, key);
  if (!f) fail<ConfigError>("--set {}: unknown key '{}'{}", key, key, suggestion(key, field_paths(s)));

  // The right side is a TOML value; text that is not one (runs/a, ten) stays a string, so
  // strings need no quotes and a bad number reads as a type error naming the value.
  toml::table parsed;
  const toml::node* value = nullptr;
  try {
    parsed = toml::parse("v = " + rhs);
    if (parsed.size() == 1) value = parsed.get("v");
  } catch (const toml::parse_error&) {
  }
  const bool wants_text = std::holds_alternative<std::string*>(f->ptr) ||
                          std::holds_alternative<std::vector<std::string>*>(f->ptr);
  if (value && wants_text && !value->is_string() && !value->is_array()) value = nullptr;

  if (!value) {
    // The text itself, as a TOML string: the parser checks it is UTF-8 like a job file, so that
    // to_toml() of the result (e.g. a checkpoint's config_toml) parses again.
    try {
      parsed = toml::parse("v = " + quote(rhs));
    } catch (const toml::parse_error& e) {
      fail<ConfigError>("--set {}: the value is not valid text ({})", key, e.description());
    }
    value = parsed.get("v");
  }
  toml::table& section = ensure_section(root, f->section);
  value->visit([&](const auto& v) { section.insert_or_assign(f->key, v); });
  return key;
}

// ---- printing --------------------------------------------------------------------------

std::string emit(const JobConfig& c, bool reference) {
  JobConfig copy = c;
  const Schema s = describe(copy);
  std::string out;
  if (reference) {
    out += "# flowlm job file reference: every section and key, with its type, constraints and\n";
    out += "# meaning. The values shown are the defaults; a job file sets only what it changes.\n";
  } else {
    out += "# flowlm job configuration, fully resolved (defaults included).\n";
  }
  for (const auto& sec : s.sections()) {
    out += "\n";
    if (reference) out += fmt::format("# {}\n", sec.doc);
    out += fmt::format("[{}]\n", sec.name);
    for (const auto& f : s.fields()) {
      if (f.section != sec.name) continue;
      if (reference) {
        const std::string rule = describe_rule(f.rule);
        out += fmt::format("# {} ({}{}{})\n", f.doc, type_name(f.ptr), rule.empty() ? "" : ", ", rule);
      }
      out += fmt::format("{} = {}\n", f.key, format_value(f.ptr));
    }
  }
  return out;
}

bool same_value(const FieldPtr& a, const FieldPtr& b) {
  return std::visit(
      [&](auto* pa) {
        using P = std::decay_t<decltype(pa)>;
        return *pa == *std::get<P>(b);
      },
      a);
}

}  // namespace

JobConfig parse_job(const std::string& toml_text, const std::string& origin,
                    const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    fail<ConfigError>("{}: malformed TOML: {}", where(origin, e.source()), e.description());
  }

  JobConfig cfg;
  const Schema schema = describe(cfg);
  check_known_keys(root, schema, origin);

  std::map<std::string, std::string> override_label;  // dotted key -> "--set key"
  for (const auto& spec : overrides) {
    const std::string key = apply_override(root, schema, spec);
    override_label[key] = "--set " + key;
  }

  std::vector<std::string> given_model_keys;
  for (const auto& f : schema.fields()) {
    const toml::table* section = find_section(root, f.section);
    const toml::node* node = section ? section->get(f.key) : nullptr;
    if (!node) continue;  // keeps the default
    if (f.section == "model") given_model_keys.push_back(f.key);
    const auto label = override_label.find(f.path());
    const std::string prefix = label != override_label.end() ? label->second : where(origin, node->source());
    read_field(ReadCtx{prefix, f.path(), *node, f.rule}, f.ptr);
  }
  // The family's defaults for the model keys the job leaves out (model.arch = "llama" alone
  // gives a Llama block); --dry-run prints the result.
  cfg.model = with_family_defaults(cfg.model, given_model_keys);
  cfg.origin = origin;
  cfg.model_keys_given = given_model_keys;
  return cfg;
}

JobConfig load_job(const std::filesystem::path& file, const std::vector<std::string>& overrides) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec))
    fail<IoError>("{}: job file not found (check the path given on the command line)", file.string());
  if (std::filesystem::is_directory(file, ec))
    fail<IoError>("{}: is a directory, expected a TOML job file", file.string());
  std::ifstream in(file, std::ios::binary);
  if (!in) fail<IoError>("{}: cannot open job file for reading", file.string());
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail<IoError>("{}: read error", file.string());
  return parse_job(text.str(), file.string(), overrides);
}

std::string to_toml(const JobConfig& c) { return emit(c, false); }

std::string reference_toml() { return emit(JobConfig{}, true); }

std::string section_help(const std::string& section) {
  JobConfig c;
  const Schema s = describe(c);
  std::string out;
  for (const auto& f : s.fields()) {
    if (f.section != section) continue;
    const std::string rule = describe_rule(f.rule);
    out += fmt::format("  {}.{} = {}  ({}{}{})\n      {}\n", f.section, f.key, format_value(f.ptr),
                       type_name(f.ptr), rule.empty() ? "" : ", ", rule, f.doc);
  }
  return out;
}

std::vector<std::string> changed_keys(const JobConfig& a, const JobConfig& b) {
  JobConfig ca = a, cb = b;
  const Schema sa = describe(ca), sb = describe(cb);
  std::vector<std::string> out;
  for (std::size_t i = 0; i < sa.fields().size(); ++i)
    if (!same_value(sa.fields()[i].ptr, sb.fields()[i].ptr)) out.push_back(sa.fields()[i].path());
  return out;
}

std::vector<std::string> all_keys() {
  JobConfig c;
  return field_paths(describe(c));
}

void check_stage(const JobConfig& c, const std::string& stage) {
  if (stage == "train") check_train_relations(c, c.origin.empty() ? std::string("job") : c.origin);
}

bool operator==(const JobConfig& a, const JobConfig& b) { return changed_keys(a, b).empty(); }
bool operator!=(const JobConfig& a, const JobConfig& b) { return !(a == b); }

void require_nonempty(const std::vector<std::string>& value, const std::string& key,
                      const std::string& stage) {
  if (value.empty())
    fail<ConfigError>("{} is empty but the {} stage needs it: set it in the job file or with --set {}=[...]",
                      key, stage, key);
}

void require_nonempty(const std::string& value, const std::string& key, const std::string& stage) {
  if (value.empty())
    fail<ConfigError>("{} is empty but the {} stage needs it: set it in the job file or with --set {}=...",
                      key, stage, key);
}

}  // namespace flowlm::config
