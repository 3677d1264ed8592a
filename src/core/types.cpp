#include "core/types.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace flowlm {

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

}  // namespace flowlm
