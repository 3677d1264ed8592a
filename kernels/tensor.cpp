#include "kernels/tensor.hpp"

namespace flowlm::kernels {

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::bf16:
      return "bf16";
    case DType::i32:
      return "i32";
  }
  return "?";
}

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32:
    case DType::i32:
      return 4;
    case DType::bf16:
      return 2;
  }
  return 0;
}

const char* device_name(Device device) { return device == Device::host ? "host" : "cuda"; }

}  // namespace flowlm::kernels
