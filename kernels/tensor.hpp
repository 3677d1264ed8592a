// Tensors as the Backend interface sees them: a non-owning view (pointer, dtype, shape, device)
// and a move-only Buffer that owns memory handed out by a backend. Row-major and contiguous.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "core/error.hpp"
#include "core/types.hpp"

namespace flowlm::kernels {

/// \brief Element type. f32 and bf16 are compute types; i32 holds token ids and targets.
enum class DType { f32, bf16, i32 };

/// \brief Where a tensor's memory lives.
enum class Device { host, cuda };

/// \brief "f32", "bf16", "i32".
const char* dtype_name(DType dtype);
/// \brief Bytes per element.
std::size_t dtype_size(DType dtype);
/// \brief "host", "cuda".
const char* device_name(Device device);

/// \brief A non-owning view of a contiguous row-major tensor. A view with data == nullptr is
/// "absent": ops document which arguments may be absent (an optional bias, a gradient nobody wants).
/// Like std::span, a const view does not make the data const; ops only read their inputs.
struct TensorView {
  void* data = nullptr;
  DType dtype = DType::f32;
  Shape shape;
  Device device = Device::host;

  /// \brief False for an absent argument.
  bool present() const { return data != nullptr; }
  /// \brief Number of elements (1 for rank 0).
  index_t numel() const { return shape_numel(shape); }
  /// \brief Size in bytes.
  std::size_t bytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype); }
  /// \brief Number of dimensions.
  int rank() const { return static_cast<int>(shape.size()); }
  /// \brief The data as float; throws flowlm::Error unless dtype is f32.
  float* f32() const {
    if (dtype != DType::f32)
      fail<Error>("tensor view {} is {}, not f32", shape_str(shape), dtype_name(dtype));
    return static_cast<float*>(data);
  }
  /// \brief The data as int32; throws flowlm::Error unless dtype is i32.
  std::int32_t* i32() const {
    if (dtype != DType::i32)
      fail<Error>("tensor view {} is {}, not i32", shape_str(shape), dtype_name(dtype));
    return static_cast<std::int32_t*>(data);
  }
};

/// \brief A view of host memory; the const overloads are for inputs (ops never write them).
inline TensorView host_view(float* data, Shape shape) {
  return TensorView{data, DType::f32, std::move(shape), Device::host};
}
inline TensorView host_view(const float* data, Shape shape) {
  return host_view(const_cast<float*>(data), std::move(shape));
}
inline TensorView host_view(std::int32_t* data, Shape shape) {
  return TensorView{data, DType::i32, std::move(shape), Device::host};
}
inline TensorView host_view(const std::int32_t* data, Shape shape) {
  return host_view(const_cast<std::int32_t*>(data), std::move(shape));
}

/// \brief Whoever hands out Buffer memory (a Backend) and takes it back.
class Deallocator {
 public:
  /// \brief Releases memory this object allocated (called by ~Buffer, never twice).
  virtual void deallocate(void* data, std::size_t bytes) noexcept = 0;

 protected:
  ~Deallocator() = default;
};

/// \brief Owns one allocation of a backend (RAII, move-only); frees it through the backend,
/// which must outlive the buffer.
class Buffer {
 public:
  Buffer() = default;
  Buffer(TensorView view, Deallocator* owner) noexcept : view_(std::move(view)), owner_(owner) {}
  ~Buffer() { reset(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept
      : view_(std::move(other.view_)), owner_(std::exchange(other.owner_, nullptr)) {
    other.view_ = TensorView{};
  }
  Buffer& operator=(Buffer&& other) noexcept {
    if (this != &other) {
      reset();
      view_ = std::move(other.view_);
      owner_ = std::exchange(other.owner_, nullptr);
      other.view_ = TensorView{};
    }
    return *this;
  }

  /// \brief The whole buffer as a view (absent for an empty Buffer).
  const TensorView& view() const noexcept { return view_; }
  /// \brief A view of the same memory with another shape of the same element count.
  TensorView view(Shape shape) const {
    if (shape_numel(shape) != view_.numel())
      fail<Error>("Buffer::view: shape {} does not match the buffer's {} elements", shape_str(shape),
                  view_.numel());
    return TensorView{view_.data, view_.dtype, std::move(shape), view_.device};
  }
  void* data() const noexcept { return view_.data; }
  explicit operator bool() const noexcept { return view_.data != nullptr; }
  /// \brief Frees the memory now; the buffer becomes empty.
  void reset() noexcept {
    if (owner_ && view_.data) owner_->deallocate(view_.data, view_.bytes());
    view_ = TensorView{};
    owner_ = nullptr;
  }

 private:
  TensorView view_;
  Deallocator* owner_ = nullptr;
};

}  // namespace flowlm::kernels
