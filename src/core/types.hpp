// The one types header: index type and the owning host tensor used across flowlm.
#pragma once

#include <cstddef>
#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

namespace flowlm {

using index_t = std::int64_t;
using Shape = std::vector<index_t>;

inline index_t shape_numel(const Shape& s) {
  return std::accumulate(s.begin(), s.end(), index_t{1}, [](index_t a, index_t b) { return a * b; });
}

/// \brief "[768, 2304]"
std::string shape_str(const Shape& s);

/// \brief An owning, contiguous, row-major fp32 host tensor.
struct Tensor {
  Shape shape;
  std::vector<float> data;

  Tensor() = default;
  explicit Tensor(Shape s, float fill = 0.0f)
      : shape(std::move(s)), data(static_cast<std::size_t>(shape_numel(shape)), fill) {}
  index_t numel() const { return static_cast<index_t>(data.size()); }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
};

}  // namespace flowlm
