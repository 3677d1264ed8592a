#include "train/weight_copies.hpp"

#include "core/error.hpp"
#include "io/checkpoint.hpp"
#include "model/checkpoint.hpp"

namespace flowlm::train {
namespace k = kernels;

namespace {
k::Buffer copy_of(const model::Transformer& model) {
  k::Buffer b = model.backend().alloc(k::DType::f32, {model.num_trainable()});
  model.backend().axpby(b.view(), model.trainable_params_view(), 1.0f, 0.0f);
  return b;
}
}  // namespace

WeightEma::WeightEma(const model::Transformer& model, double decay)
    : decay_(decay), backend_(&model.backend()), ema_(copy_of(model)) {}

void WeightEma::load(const io::CheckpointReader& ckpt, const model::Transformer& model) {
  float* host = const_cast<float*>(host_data());
  const auto& table = model.trainable_table();
  std::vector<float> stored;
  for (std::size_t i = 0; i < table.size(); ++i) {
    stored.resize(static_cast<std::size_t>(table[i].numel));
    ckpt.read("model", table[i].name, table[i].shape, stored.data());
    model::unstore_tensor(model, i, stored.data(), host);
  }
}

void WeightEma::update(const model::Transformer& model) {
  const auto d = static_cast<float>(decay_);
  backend_->axpby(ema_.view(), model.trainable_params_view(), 1.0f - d, d);
}

const float* WeightEma::host_data() const {
  if (backend_->device() != k::Device::host)
    fail<Error>("WeightEma: the EMA lives on the {} backend; copy it to the host first", backend_->name());
  return static_cast<const float*>(ema_.data());
}

L2ToInit::L2ToInit(const model::Transformer& model, double lambda)
    : lambda_(lambda),
      backend_(&model.backend()),
      theta0_(copy_of(model)),
      diff_(model.backend().alloc(k::DType::f32, {model.num_trainable()})) {}

double L2ToInit::add_gradient(model::Transformer& model) {
  const double P = static_cast<double>(model.num_trainable());
  backend_->axpby(diff_.view(), model.trainable_params_view(), 1.0f, 0.0f);  // d = theta
  backend_->axpby(diff_.view(), theta0_.view(), -1.0f, 1.0f);                // d = theta - theta0
  backend_->axpby(model.trainable_grads_view(), diff_.view(), static_cast<float>(2.0 * lambda_ / P), 1.0f);
  return lambda_ * backend_->sum_squares(diff_.view()) / P;
}

L1ToInit::L1ToInit(const model::Transformer& model, double lambda)
    : lambda_(lambda),
      backend_(&model.backend()),
      theta0_(copy_of(model)),
      diff_(model.backend().alloc(k::DType::f32, {model.num_trainable()})),
      sign_(model.backend().alloc(k::DType::f32, {model.num_trainable()})) {}

double L1ToInit::add_gradient(model::Transformer& model) {
  const double P = static_cast<double>(model.num_trainable());
  backend_->axpby(diff_.view(), model.trainable_params_view(), 1.0f, 0.0f);  // d = theta
  backend_->axpby(diff_.view(), theta0_.view(), -1.0f, 1.0f);                // d = theta - theta0
  backend_->sign(sign_.view(), diff_.view());
  backend_->axpby(model.trainable_grads_view(), sign_.view(), static_cast<float>(lambda_ / P), 1.0f);
  return lambda_ * backend_->dot(diff_.view(), sign_.view()) / P;  // sum |d| = d . sign(d)
}

}  // namespace flowlm::train
