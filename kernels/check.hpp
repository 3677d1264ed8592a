// Argument checks for Backend implementations (header-only so that every backend library can use
// it): a failed check throws flowlm::Error naming the backend, the op function, the argument and
// its shape or dtype, e.g. "host: matmul_forward: weight has shape [5, 7], expected [4, 7]".
#pragma once

#include <fmt/format.h>

#include <string>
#include <utility>

#include "core/error.hpp"
#include "kernels/backend.hpp"

namespace flowlm::kernels {

/// \brief The checks of one op call on one backend.
class ArgCheck {
 public:
  ArgCheck(const Backend& backend, Op op, const char* fn) : backend_(backend), op_(op), fn_(fn) {}

  /// \brief Throws E "<backend>: <fn>: <message>" (DataError for bad ids in the data).
  template <class E, class... A>
  [[noreturn]] void fail_as(fmt::format_string<A...> f, A&&... args) const {
    flowlm::fail<E>("{}: {}: {}", backend_.name(), fn_, fmt::format(f, std::forward<A>(args)...));
  }
  /// \brief Throws flowlm::Error "<backend>: <fn>: <message>" (a caller's bug: shape, dtype, device).
  template <class... A>
  [[noreturn]] void fail(fmt::format_string<A...> f, A&&... args) const {
    fail_as<Error>(f, std::forward<A>(args)...);
  }
  template <class... A>
  void require(bool ok, fmt::format_string<A...> f, A&&... args) const {
    if (!ok) fail(f, std::forward<A>(args)...);
  }

  /// \brief A present float tensor on the backend's device, in a dtype the backend runs this op in.
  void floats(const char* name, const TensorView& v) const {
    require(v.present(), "{} is required but absent (null data)", name);
    on_device(name, v);
    require(v.dtype != DType::i32, "{} {} is i32; it must be a float tensor", name, shape_str(v.shape));
    require(backend_.supports(op_, v.dtype), "{} {} is {}, but the {} backend does not run {} in {}", name,
            shape_str(v.shape), dtype_name(v.dtype), backend_.name(), op_name(op_), dtype_name(v.dtype));
  }
  /// \brief As floats() for an optional argument; false when it is absent.
  bool optional_floats(const char* name, const TensorView& v) const {
    if (!v.present()) return false;
    floats(name, v);
    return true;
  }
  /// \brief A present i32 tensor (token ids, targets) on the backend's device.
  void ids(const char* name, const TensorView& v) const {
    require(v.present(), "{} is required but absent (null data)", name);
    on_device(name, v);
    require(v.dtype == DType::i32, "{} {} is {}; token ids and targets are i32", name, shape_str(v.shape),
            dtype_name(v.dtype));
  }

  /// \brief v.shape == want.
  void shape(const char* name, const TensorView& v, const Shape& want) const {
    require(v.shape == want, "{} has shape {}, expected {}", name, shape_str(v.shape), shape_str(want));
  }
  /// \brief v has `rank` dimensions.
  void rank(const char* name, const TensorView& v, int rank) const {
    require(v.rank() == rank, "{} has shape {}, expected {} dimensions", name, shape_str(v.shape), rank);
  }
  /// \brief v.numel() == n (vectors over rows, whose leading dims may be shaped either way).
  void numel(const char* name, const TensorView& v, index_t n) const {
    require(v.numel() == n, "{} has shape {} ({} elements), expected {} elements", name, shape_str(v.shape),
            v.numel(), n);
  }
  /// \brief The last dimension of a tensor of rank >= 1 (rows are the product of the others).
  index_t last_dim(const char* name, const TensorView& v) const {
    require(v.rank() >= 1 && v.shape.back() > 0, "{} has shape {}, expected [..., C] with C > 0", name,
            shape_str(v.shape));
    return v.shape.back();
  }
  /// \brief v is N rows of C: last dim C and N * C elements.
  void rows(const char* name, const TensorView& v, index_t N, index_t C) const {
    require(v.rank() >= 1 && v.shape.back() == C && v.numel() == N * C,
            "{} has shape {}, expected {} rows of {} ([..., {}])", name, shape_str(v.shape), N, C, C);
  }

 private:
  void on_device(const char* name, const TensorView& v) const {
    require(v.device == backend_.device(), "{} {} is on {}, but the {} backend works on {} memory", name,
            shape_str(v.shape), device_name(v.device), backend_.name(), device_name(backend_.device()));
  }

  const Backend& backend_;
  Op op_;
  const char* fn_;
};

}  // namespace flowlm::kernels
