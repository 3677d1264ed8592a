#include "model/lora.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"
#include "core/random.hpp"

namespace flowlm::model {

namespace k = flowlm::kernels;
using k::TensorView;

namespace {

bool is_projection(const ParamSpec& p) {
  if (p.layer < 0 || p.is_bias || !p.is_matrix) return false;
  return p.role == Role::qkv || p.role == Role::attn_out || p.role == Role::mlp_in || p.role == Role::mlp_out;
}

/// "transformer.h.0.attn.c_attn.weight" -> "c_attn"
std::string module_leaf(const std::string& weight_name) {
  const std::string module = weight_name.substr(0, weight_name.rfind('.'));
  return module.substr(module.rfind('.') + 1);
}

bool matches(const std::string& weight_name, const std::vector<std::string>& targets) {
  const std::string leaf = module_leaf(weight_name);
  return std::find(targets.begin(), targets.end(), leaf) != targets.end();
}

}  // namespace

std::string peft_adapter_name(const std::string& weight_name, char which) {
  const std::string module = weight_name.substr(0, weight_name.rfind('.'));
  return fmt::format("base_model.model.{}.lora_{}.weight", module, which);
}

std::vector<std::string> lora_target_names(const std::vector<ParamSpec>& table) {
  std::vector<std::string> out;
  for (const auto& p : table) {
    if (!is_projection(p)) continue;
    const std::string leaf = module_leaf(p.name);
    if (std::find(out.begin(), out.end(), leaf) == out.end()) out.push_back(leaf);
  }
  return out;
}

Lora::Lora(const std::vector<ParamSpec>& base_table, const config::LoraConfig& spec, k::Backend& backend)
    : spec_(spec), backend_(&backend) {
  if (spec_.r < 1) fail<ConfigError>("finetune.lora.r = {}: LoRA needs a rank >= 1", spec_.r);
  if (spec_.dropout != 0.0)
    fail<ConfigError>(
        "finetune.lora.dropout = {}: flowlm folds B A into the weight for each step, which has no dropout on "
        "the adapters' input; set it to 0",
        spec_.dropout);
  if (spec_.alpha == 0.0) spec_.alpha = static_cast<double>(spec_.r);
  scale_ = static_cast<float>(spec_.alpha / static_cast<double>(spec_.r));
  const std::vector<std::string> names = lora_target_names(base_table);
  if (spec_.targets.empty()) spec_.targets = names;
  for (const auto& t : spec_.targets)
    if (std::find(names.begin(), names.end(), t) == names.end())
      fail<ConfigError>("finetune.lora.targets: '{}' is not a projection of this model; choose from {}", t,
                        fmt::join(names, ", "));

  const index_t r = spec_.r;
  for (std::size_t i = 0; i < base_table.size(); ++i) {
    const ParamSpec& p = base_table[i];
    if (!is_projection(p) || !matches(p.name, spec_.targets)) continue;
    LoraAdapter a;
    a.base = static_cast<index_t>(i);
    a.group = a.base;  // fused groups (q, k, v; gate, up) are adjacent tensors of one role
    while (a.group > 0) {
      const ParamSpec& prev = base_table[static_cast<std::size_t>(a.group - 1)];
      if (prev.layer != p.layer || prev.role != p.role || prev.is_bias) break;
      --a.group;
    }
    a.rows = p.shape[0];
    a.cols = p.shape[1];
    a.transposed = p.name.rfind("transformer.", 0) == 0;  // GPT-2 Conv1D: [in, out]
    if (a.transposed && a.group != a.base)
      fail<Error>("LoRA: {} is part of a fused Conv1D group; only whole Conv1D weights can be adapted",
                  p.name);
    a.row_offset = (p.offset - base_table[static_cast<std::size_t>(a.group)].offset) / a.cols;
    index_t group_rows = 0;
    for (auto u = static_cast<std::size_t>(a.group);
         u < base_table.size() && base_table[u].layer == p.layer && base_table[u].role == p.role &&
         !base_table[u].is_bias;
         ++u)
      group_rows += base_table[u].shape[0];
    max_group_ = std::max(max_group_, group_rows * a.cols);
    max_adapter_ = std::max(max_adapter_, a.rows * a.cols);
    const index_t in = a.transposed ? a.rows : a.cols, out = a.transposed ? a.cols : a.rows;
    auto add = [&](char which, Shape shape) {
      ParamSpec s;
      s.name = peft_adapter_name(p.name, which);
      s.shape = std::move(shape);
      s.numel = s.shape[0] * s.shape[1];
      s.offset = num_params_;
      s.role = p.role;
      s.layer = p.layer;
      s.is_matrix = true;
      s.init = which == 'A' ? Init::normal : Init::zeros;
      num_params_ += s.numel;
      table_.push_back(std::move(s));
      owner_.push_back(static_cast<index_t>(adapters_.size()));
      return static_cast<index_t>(table_.size() - 1);
    };
    a.lora_a = add('A', {r, in});
    a.lora_b = add('B', {out, r});
    adapters_.push_back(a);
  }
  if (adapters_.empty())
    fail<ConfigError>("finetune.lora.targets = [{}] adapts no weight of this model",
                      fmt::join(spec_.targets, ", "));
  params_ = backend_->alloc(k::DType::f32, {num_params_});
}

std::size_t Lora::scratch_bytes() const {
  return static_cast<std::size_t>(2 * max_group_ + max_adapter_) * sizeof(float);
}

TensorView Lora::grads_view() {
  if (!grads_) grads_ = backend_->alloc(k::DType::f32, {num_params_});
  return grads_.view();
}

void Lora::zero_grad() {
  if (!grads_)
    grads_ = backend_->alloc(k::DType::f32, {num_params_});
  else
    backend_->zero(grads_.view());
}

TensorView Lora::x_view(const LoraAdapter& a, const TensorView& buf) const {
  const ParamSpec& s = table_[static_cast<std::size_t>(a.transposed ? a.lora_a : a.lora_b)];
  return TensorView{static_cast<float*>(buf.data) + s.offset, k::DType::f32, {a.rows, spec_.r}, buf.device};
}

TensorView Lora::y_view(const LoraAdapter& a, const TensorView& buf) const {
  const ParamSpec& s = table_[static_cast<std::size_t>(a.transposed ? a.lora_b : a.lora_a)];
  return TensorView{static_cast<float*>(buf.data) + s.offset, k::DType::f32, {spec_.r, a.cols}, buf.device};
}

void Lora::init_random(std::uint64_t seed) {
  std::vector<std::vector<float>> peft;
  for (const ParamSpec& s : table_) {
    std::vector<float> host(static_cast<std::size_t>(s.numel), 0.0f);
    if (s.init == Init::normal) {
      const double bound = 1.0 / std::sqrt(static_cast<double>(s.shape[1]));
      std::uint64_t state = seed ^ fnv1a(s.name);
      for (auto& x : host) x = static_cast<float>((2.0 * uniform01(state) - 1.0) * bound);
    }
    peft.push_back(std::move(host));
  }
  write_all(peft);
}

std::vector<float> Lora::to_peft(std::size_t i, const float* flat) const {
  const ParamSpec& s = table_.at(i);
  const float* src = flat + s.offset;
  if (!adapters_[static_cast<std::size_t>(owner_[i])].transposed)
    return std::vector<float>(src, src + s.numel);
  // Stored as the transpose of PEFT's [s0, s1].
  std::vector<float> out(static_cast<std::size_t>(s.numel));
  const index_t s0 = s.shape[0], s1 = s.shape[1];
  for (index_t i0 = 0; i0 < s0; ++i0)
    for (index_t i1 = 0; i1 < s1; ++i1) out[static_cast<std::size_t>(i0 * s1 + i1)] = src[i1 * s0 + i0];
  return out;
}

void Lora::from_peft(std::size_t i, const float* peft, float* flat) const {
  const ParamSpec& s = table_.at(i);
  float* dst = flat + s.offset;
  if (!adapters_[static_cast<std::size_t>(owner_[i])].transposed) {
    std::copy(peft, peft + s.numel, dst);
    return;
  }
  const index_t s0 = s.shape[0], s1 = s.shape[1];
  for (index_t i0 = 0; i0 < s0; ++i0)
    for (index_t i1 = 0; i1 < s1; ++i1) dst[i1 * s0 + i0] = peft[i0 * s1 + i1];
}

std::vector<float> Lora::host_params() const {
  std::vector<float> flat(static_cast<std::size_t>(num_params_));
  backend_->copy_out(flat.data(), flat.size() * sizeof(float), params_.view());
  return flat;
}

std::vector<float> Lora::read(std::size_t i) const { return to_peft(i, host_params().data()); }

void Lora::write(std::size_t i, const float* src) {
  std::vector<float> flat = host_params();
  from_peft(i, src, flat.data());
  backend_->copy_in(params_.view(), flat.data(), flat.size() * sizeof(float));
}

void Lora::write_all(const std::vector<std::vector<float>>& peft) {
  if (peft.size() != table_.size())
    fail<Error>("Lora::write_all: {} tensors given for {} adapter tensors", peft.size(), table_.size());
  std::vector<float> flat(static_cast<std::size_t>(num_params_));
  for (std::size_t i = 0; i < table_.size(); ++i) from_peft(i, peft[i].data(), flat.data());
  backend_->copy_in(params_.view(), flat.data(), flat.size() * sizeof(float));
}

bool Lora::adapts(index_t group) const {
  return std::any_of(adapters_.begin(), adapters_.end(),
                     [&](const LoraAdapter& a) { return a.group == group; });
}

TensorView Lora::scratch(k::Buffer& buf, const Shape& shape) {
  index_t n = 1;
  for (index_t d : shape) n *= d;
  if (!buf || buf.view().numel() < n) {
    buf.reset();
    buf = backend_->alloc(k::DType::f32, {n});
  }
  return TensorView{buf.data(), k::DType::f32, shape, backend_->device()};
}

TensorView Lora::merged(index_t group, const TensorView& base) {
  const TensorView out = scratch(merged_, base.shape);
  backend_->axpby(out, base, 1.0f, 0.0f);
  const TensorView params = params_.view();
  for (const LoraAdapter& a : adapters_) {
    if (a.group != group) continue;
    const TensorView delta = scratch(delta_, {a.rows, a.cols});
    // delta [rows, cols] = X [rows, r] @ Y [r, cols] (Y read as a Conv1D weight [in, out]).
    backend_->matmul_forward(delta, x_view(a, params), y_view(a, params), TensorView{},
                             k::WeightLayout::conv1d);
    const TensorView rows{
        static_cast<float*>(out.data) + a.row_offset * a.cols, k::DType::f32, {a.rows, a.cols}, out.device};
    backend_->axpby(rows, delta, scale_, 1.0f);
  }
  return out;
}

TensorView Lora::group_grad(const TensorView& base) {
  const TensorView g = scratch(dweight_, base.shape);
  backend_->zero(g);
  return g;
}

void Lora::backward(index_t group, const TensorView& dweight) {
  backend_->scale(dweight, scale_);
  const TensorView params = params_.view(), grads = grads_view();
  for (const LoraAdapter& a : adapters_) {
    if (a.group != group) continue;
    const TensorView g{static_cast<float*>(dweight.data) + a.row_offset * a.cols,
                       k::DType::f32,
                       {a.rows, a.cols},
                       dweight.device};
    // As the backward of delta = X @ Y: dX += G Y^T, dY += X^T G.
    backend_->matmul_backward(x_view(a, grads), y_view(a, grads), TensorView{}, g, x_view(a, params),
                              y_view(a, params), k::WeightLayout::conv1d);
  }
}

}  // namespace flowlm::model
