// JSON values in error messages. Files from elsewhere (tokenizer.json, safetensors headers,
// config.json) can hold huge or deeply nested values where a scalar is expected: a message
// shows a short, non-recursive description instead of dumping the value.
#pragma once

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstddef>
#include <string>

namespace flowlm::io {

/// \brief `j` as short text: scalars and small flat arrays/objects as JSON (cut to about
/// `max_chars`), other containers as "an array of N items" / "an object with N keys". Never
/// recurses, so a deeply nested value cannot exhaust the stack.
inline std::string json_brief(const nlohmann::json& j, std::size_t max_chars = 80) {
  const auto cut = [max_chars](std::string s) {
    if (s.size() <= max_chars) return s;
    std::size_t n = max_chars > 3 ? max_chars - 3 : 0;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // not inside a character
    return s.substr(0, n) + "...";
  };
  if (!j.is_structured()) return cut(j.dump());
  bool flat = j.size() <= 16;
  for (const auto& e : j) flat = flat && !e.is_structured();
  if (flat) return cut(j.dump());
  const char* plural = j.size() == 1 ? "" : "s";
  return j.is_array() ? fmt::format("an array of {} item{}", j.size(), plural)
                      : fmt::format("an object with {} key{}", j.size(), plural);
}

}  // namespace flowlm::io
