// The job schema as data: every section lists its keys (name, member, doc, constraints)
// once, and the engine in config.cpp walks that list for parsing, range checks, unknown-key
// detection, overrides, printing and comparison.
//
// Adding a section: a struct in config.hpp plus a JobConfig member, a
// `void describe(NewConfig&, Schema&)` table in schema.cpp, one `s.section(...)` line in
// describe(JobConfig&), and any cross-key checks in check_relations().
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "config/config.hpp"

namespace flowlm::config {

/// \brief Constraints on one key. Numeric bounds apply to numbers and to each element of
/// an integer array; `choices` and `nonempty` apply to strings.
struct Rule {
  std::optional<double> lo, hi;
  bool lo_open = false, hi_open = false;
  std::vector<std::string> choices;
  bool nonempty = false;

  Rule& gt(double v) { return set_lo(v, true); }
  Rule& ge(double v) { return set_lo(v, false); }
  Rule& lt(double v) { return set_hi(v, true); }
  Rule& le(double v) { return set_hi(v, false); }

 private:
  Rule& set_lo(double v, bool open) {
    lo = v;
    lo_open = open;
    return *this;
  }
  Rule& set_hi(double v, bool open) {
    hi = v;
    hi_open = open;
    return *this;
  }
};

inline Rule gt(double v) { return Rule{}.gt(v); }
inline Rule ge(double v) { return Rule{}.ge(v); }
inline Rule between(double lo, double hi) { return Rule{}.ge(lo).le(hi); }
inline Rule one_of(std::vector<std::string> choices) {
  Rule r;
  r.choices = std::move(choices);
  return r;
}
inline Rule nonempty() {
  Rule r;
  r.nonempty = true;
  return r;
}

/// \brief A pointer to the member a key reads into; the alternatives are the value types
/// the schema supports (integers stay int64).
using FieldPtr = std::variant<std::int64_t*, double*, bool*, std::string*, std::vector<std::string>*,
                              std::vector<std::int64_t>*, std::vector<double>*, TauSpec*>;

/// \brief One key of one section.
struct Field {
  std::string section, key, doc;
  FieldPtr ptr;
  Rule rule;
  /// \brief "section.key"
  std::string path() const { return section + "." + key; }
};

/// \brief One section: its table name and a one-line doc.
struct Section {
  std::string name, doc;
};

/// \brief The flat list of sections and fields of one JobConfig (pointers into it).
class Schema {
 public:
  /// \brief Starts a section; the fields that follow belong to it.
  void section(std::string name, std::string doc) { sections_.push_back({std::move(name), std::move(doc)}); }
  template <class T>
  void field(std::string key, T& member, std::string doc, Rule rule = {}) {
    fields_.push_back(
        Field{sections_.back().name, std::move(key), std::move(doc), FieldPtr(&member), std::move(rule)});
  }
  const std::vector<Section>& sections() const { return sections_; }
  const std::vector<Field>& fields() const { return fields_; }

 private:
  std::vector<Section> sections_;
  std::vector<Field> fields_;
};

/// \brief The field tables: every section and key of `c`, pointing into `c`.
Schema describe(JobConfig& c);

/// \brief The training stage's checks between keys (n_embd % n_head, seq_len <= block_size,
/// ...); throws ConfigError prefixed by `origin`.
void check_train_relations(const JobConfig& c, const std::string& origin);

}  // namespace flowlm::config
