#include "kernels/ops.hpp"

namespace flowlm::kernels {

const char* op_name(Op op) {
  switch (op) {
    case Op::embedding:
      return "embedding";
    case Op::layernorm:
      return "layernorm";
    case Op::rmsnorm:
      return "rmsnorm";
    case Op::matmul:
      return "matmul";
    case Op::rope:
      return "rope";
    case Op::attention:
      return "attention";
    case Op::gelu:
      return "gelu";
    case Op::glu:
      return "glu";
    case Op::residual:
      return "residual";
    case Op::softcap:
      return "softcap";
    case Op::crossentropy:
      return "crossentropy";
    case Op::per_sample_loss:
      return "per_sample_loss";
    case Op::adamw:
      return "adamw";
    case Op::sum_squares:
      return "sum_squares";
    case Op::dot:
      return "dot";
    case Op::scale:
      return "scale";
    case Op::all_finite:
      return "all_finite";
    case Op::axpby:
      return "axpby";
    case Op::sign:
      return "sign";
    case Op::kv_cache:
      return "kv_cache";
  }
  return "?";
}

}  // namespace flowlm::kernels
