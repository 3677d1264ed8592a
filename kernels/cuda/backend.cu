// The "cuda" backend: checks each call's views exactly as the host backends do (kernels/arg_check.hpp),
// then launches the family's kernels (kernels/cuda/<family>.cu) on the backend's stream. Ops return
// without waiting for the GPU; only those whose answer the caller needs now (sum_squares, dot,
// all_finite) and the token-range checks of embedding and cross-entropy wait for their result.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/arg_check.hpp"
#include "kernels/cuda/adamw.cuh"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/backend.hpp"
#include "kernels/cuda/check.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/crossentropy.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/gelu.cuh"
#include "kernels/cuda/glu.cuh"
#include "kernels/cuda/kv_cache.cuh"
#include "kernels/cuda/layernorm.cuh"
#include "kernels/cuda/matmul.cuh"
#include "kernels/cuda/residual.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/softcap.cuh"
#include "kernels/cuda/vector.cuh"

namespace flowlm::kernels::cuda {

namespace {

// RAII for the handles the backend owns (the destructors cannot throw: their errors are dropped).
struct StreamDestroy {
  void operator()(cudaStream_t s) const noexcept { (void)cudaStreamDestroy(s); }
};
struct BlasDestroy {
  void operator()(cublasHandle_t h) const noexcept { (void)cublasDestroy(h); }
};
struct DeviceFree {
  void operator()(void* p) const noexcept { (void)cudaFree(p); }
};
struct PinnedFree {
  void operator()(void* p) const noexcept { (void)cudaFreeHost(p); }
};
using StreamPtr = std::unique_ptr<std::remove_pointer_t<cudaStream_t>, StreamDestroy>;
using BlasPtr = std::unique_ptr<std::remove_pointer_t<cublasHandle_t>, BlasDestroy>;

// Device memory of the ops that hand a value back to the host, allocated once per backend.
struct Scratch {
  double partials[kReduceBlocks];  // sum_squares / dot, first pass
  double result;                   // sum_squares / dot
  unsigned long long bad;          // first bad token index / target row, kNoBadIndex if none
  int nonfinite;                   // all_finite: 1 when a NaN or Inf was seen
};

float* opt(const TensorView& v) { return v.present() ? v.f32() : nullptr; }

class CudaBackend final : public Backend {
 public:
  // make_backend() has checked that a device is visible.
  CudaBackend() {
    FLOWLM_CUDA_CHECK(cudaGetDevice(&device_));
    FLOWLM_CUDA_CHECK(cudaSetDevice(device_));  // creates the context now rather than inside the first op
    cudaStream_t s = nullptr;
    FLOWLM_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    stream_.reset(s);
    cublasHandle_t h = nullptr;
    FLOWLM_CUBLAS_CHECK(cublasCreate(&h));
    blas_.reset(h);
    FLOWLM_CUBLAS_CHECK(cublasSetStream(h, s));
    // Full fp32 GEMMs: no TF32 tensor-op math, so results match the fp32 reference closely.
    FLOWLM_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    void* p = nullptr;
    FLOWLM_CUDA_CHECK(cudaMalloc(&p, sizeof(Scratch)));
    scratch_.reset(p);
    FLOWLM_CUDA_CHECK(cudaMallocHost(&p, sizeof(double)));
    staging_.reset(p);
  }

  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::cuda; }
  // fp32 only for now; bf16 compute (with fp32 master weights and moments) is the next step.
  bool supports(Op, DType dtype) const override { return dtype == DType::f32; }

  // ---- memory
  Buffer alloc(DType dtype, const Shape& shape) override {
    args::alloc(*this, shape);
    TensorView v{nullptr, dtype, shape, Device::cuda};
    const std::size_t bytes = std::max<std::size_t>(v.bytes(), 1);  // never 0: a buffer is never "absent"
    const cudaError_t err = cudaMalloc(&v.data, bytes);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      fail<Error>("cuda: alloc: cannot allocate {} {} ({} bytes) on device {}: {}", dtype_name(dtype),
                  shape_str(shape), bytes, device_, cudaGetErrorString(err));
    }
    Buffer buf(std::move(v), this);
    FLOWLM_CUDA_CHECK(cudaMemsetAsync(buf.data(), 0, bytes, stream()));
    return buf;
  }
  void deallocate(void* data, std::size_t) noexcept override { (void)cudaFree(data); }

  // Copies wait for the stream: the host memory may be reused as soon as the call returns (also
  // pinned memory, which an asynchronous copy would read later), and copy_out's data is there.
  void copy_in(const TensorView& dst, const void* src, std::size_t bytes) override {
    args::copy(*this, "copy_in", dst, bytes);
    FLOWLM_CUDA_CHECK(cudaMemcpyAsync(dst.data, src, bytes, cudaMemcpyHostToDevice, stream()));
    synchronize();
  }
  void copy_out(void* dst, std::size_t bytes, const TensorView& src) override {
    args::copy(*this, "copy_out", src, bytes);
    FLOWLM_CUDA_CHECK(cudaMemcpyAsync(dst, src.data, bytes, cudaMemcpyDeviceToHost, stream()));
    synchronize();
  }
  void zero(const TensorView& x) override {
    args::copy(*this, "zero", x, x.bytes());
    FLOWLM_CUDA_CHECK(cudaMemsetAsync(x.data, 0, x.bytes(), stream()));
  }
  void synchronize() override { FLOWLM_CUDA_CHECK(cudaStreamSynchronize(stream())); }

  // ---- embedding
  void embedding_forward(const TensorView& out, const TensorView& tokens, const TensorView& wte,
                         const TensorView& wpe, float scale) override {
    const ArgCheck a(*this, Op::embedding, "embedding_forward");
    const auto [B, T, V, C] = args::embedding_forward(a, out, tokens, wte, wpe);
    reset_bad();
    cuda::embedding_forward(stream(), out.f32(), tokens.i32(), wte.f32(), opt(wpe), B, T, C, V, scale, bad());
    check_tokens(a, tokens, V);
  }
  void embedding_backward(const TensorView& dwte, const TensorView& dwpe, const TensorView& dout,
                          const TensorView& tokens, float scale) override {
    const ArgCheck a(*this, Op::embedding, "embedding_backward");
    const auto [B, T, V, C] = args::embedding_backward(a, dwte, dwpe, dout, tokens);
    reset_bad();
    cuda::embedding_backward(stream(), dwte.f32(), opt(dwpe), dout.f32(), tokens.i32(), B, T, C, V, scale,
                             bad());
    check_tokens(a, tokens, V);
  }

  // ---- layernorm
  void layernorm_forward(const TensorView& out, const TensorView& mean, const TensorView& rstd,
                         const TensorView& inp, const TensorView& weight, const TensorView& bias,
                         float eps) override {
    const ArgCheck a(*this, Op::layernorm, "layernorm_forward");
    const auto [N, C] = args::layernorm_forward(a, out, mean, rstd, inp, weight, bias, eps);
    cuda::layernorm_forward(stream(), out.f32(), mean.f32(), rstd.f32(), inp.f32(), weight.f32(), bias.f32(),
                            N, C, eps);
  }
  void layernorm_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dbias,
                          const TensorView& dout, const TensorView& inp, const TensorView& weight,
                          const TensorView& mean, const TensorView& rstd) override {
    const ArgCheck a(*this, Op::layernorm, "layernorm_backward");
    const auto [N, C] = args::layernorm_backward(a, dinp, dweight, dbias, dout, inp, weight, mean, rstd);
    cuda::layernorm_backward(stream(), dinp.f32(), dweight.f32(), dbias.f32(), dout.f32(), inp.f32(),
                             weight.f32(), mean.f32(), rstd.f32(), N, C);
  }

  // ---- rmsnorm
  void rmsnorm_forward(const TensorView& out, const TensorView& rstd, const TensorView& inp,
                       const TensorView& weight, const RmsnormParams& p) override {
    const ArgCheck a(*this, Op::rmsnorm, "rmsnorm_forward");
    const auto [N, C] = args::rmsnorm_forward(a, out, rstd, inp, weight, p);
    cuda::rmsnorm_forward(stream(), out.f32(), rstd.f32(), inp.f32(), weight.f32(), N, C, p.eps, p.plus_one);
  }
  void rmsnorm_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dout,
                        const TensorView& inp, const TensorView& weight, const TensorView& rstd,
                        const RmsnormParams& p) override {
    const ArgCheck a(*this, Op::rmsnorm, "rmsnorm_backward");
    const auto [N, C] = args::rmsnorm_backward(a, dinp, dweight, dout, inp, weight, rstd);
    cuda::rmsnorm_backward(stream(), dinp.f32(), dweight.f32(), dout.f32(), inp.f32(), weight.f32(),
                           rstd.f32(), N, C, p.plus_one);
  }

  // ---- matmul
  void matmul_forward(const TensorView& out, const TensorView& inp, const TensorView& weight,
                      const TensorView& bias, WeightLayout layout) override {
    const ArgCheck a(*this, Op::matmul, "matmul_forward");
    const auto [N, C, OC] = args::matmul_forward(a, out, inp, weight, bias, layout);
    cuda::matmul_forward(blas_.get(), stream(), out.f32(), inp.f32(), weight.f32(), opt(bias), N, C, OC,
                         layout);
  }
  void matmul_backward(const TensorView& dinp, const TensorView& dweight, const TensorView& dbias,
                       const TensorView& dout, const TensorView& inp, const TensorView& weight,
                       WeightLayout layout) override {
    const ArgCheck a(*this, Op::matmul, "matmul_backward");
    const auto [N, C, OC] = args::matmul_backward(a, dinp, dweight, dbias, dout, inp, weight, layout);
    cuda::matmul_backward(blas_.get(), stream(), opt(dinp), opt(dweight), opt(dbias), dout.f32(), inp.f32(),
                          weight.f32(), N, C, OC, layout);
  }

  // ---- rope
  void rope_forward(const TensorView& qkv, const RopeParams& p) override {
    const ArgCheck a(*this, Op::rope, "rope_forward");
    const auto [B, T] = args::rope(a, "qkv", qkv, p);
    cuda::rope_forward(stream(), qkv.f32(), B, T, p);
  }
  void rope_backward(const TensorView& dqkv, const RopeParams& p) override {
    const ArgCheck a(*this, Op::rope, "rope_backward");
    const auto [B, T] = args::rope(a, "dqkv", dqkv, p);
    cuda::rope_backward(stream(), dqkv.f32(), B, T, p);
  }

  void rope_forward_at(const TensorView& qkv, const TensorView& start, const RopeParams& p) override {
    const ArgCheck a(*this, Op::rope, "rope_forward_at");
    const auto [B, T] = args::rope_at(a, qkv, start, p);
    cuda::rope_forward_at(stream(), qkv.f32(), start.i32(), B, T, p);
  }

  // ---- key/value cache (the positions are checked on the host: B integers per call)
  void kv_cache_write(const TensorView& k_cache, const TensorView& v_cache, const TensorView& qkv,
                      const TensorView& start, const AttentionParams& p) override {
    const ArgCheck a(*this, Op::kv_cache, "kv_cache_write");
    const auto [B, T, S] = args::kv_cache_write(a, k_cache, v_cache, qkv, start, p);
    check_positions(a, start, B, T, S);
    cuda::kv_cache_write(stream(), k_cache.f32(), v_cache.f32(), qkv.f32(), start.i32(), B, T, S, p);
  }
  void attention_cached(const TensorView& out, const TensorView& qkv, const TensorView& k_cache,
                        const TensorView& v_cache, const TensorView& start,
                        const AttentionParams& p) override {
    const ArgCheck a(*this, Op::kv_cache, "attention_cached");
    const auto [B, T, S] = args::attention_cached(a, out, qkv, k_cache, v_cache, start, p);
    check_positions(a, start, B, T, S);
    cuda::attention_cached(stream(), out.f32(), qkv.f32(), k_cache.f32(), v_cache.f32(), start.i32(), B, T, S,
                           p);
  }

  // ---- attention
  void attention_forward(const TensorView& out, const TensorView& att, const TensorView& qkv,
                         const AttentionParams& p) override {
    const ArgCheck a(*this, Op::attention, "attention_forward");
    const auto [B, T] = args::attention_forward(a, out, att, qkv, p);
    cuda::attention_forward(stream(), out.f32(), att.f32(), qkv.f32(), B, T, p);
  }
  void attention_backward(const TensorView& dqkv, const TensorView& datt, const TensorView& dout,
                          const TensorView& qkv, const TensorView& att, const AttentionParams& p) override {
    const ArgCheck a(*this, Op::attention, "attention_backward");
    const auto [B, T] = args::attention_backward(a, dqkv, datt, dout, qkv, att, p);
    cuda::attention_backward(stream(), dqkv.f32(), datt.f32(), dout.f32(), qkv.f32(), att.f32(), B, T, p);
  }

  // ---- gelu
  void gelu_forward(const TensorView& out, const TensorView& inp) override {
    const ArgCheck a(*this, Op::gelu, "gelu_forward");
    const index_t n = args::gelu_forward(a, out, inp);
    cuda::gelu_forward(stream(), out.f32(), inp.f32(), n);
  }
  void gelu_backward(const TensorView& dinp, const TensorView& inp, const TensorView& dout) override {
    const ArgCheck a(*this, Op::gelu, "gelu_backward");
    const index_t n = args::gelu_backward(a, dinp, inp, dout);
    cuda::gelu_backward(stream(), dinp.f32(), inp.f32(), dout.f32(), n);
  }

  // ---- glu
  void glu_forward(const TensorView& out, const TensorView& inp, GluKind kind) override {
    const ArgCheck a(*this, Op::glu, "glu_forward");
    const auto [N, F] = args::glu_forward(a, out, inp);
    cuda::glu_forward(stream(), out.f32(), inp.f32(), N, F, kind);
  }
  void glu_backward(const TensorView& dinp, const TensorView& inp, const TensorView& dout,
                    GluKind kind) override {
    const ArgCheck a(*this, Op::glu, "glu_backward");
    const auto [N, F] = args::glu_backward(a, dinp, inp, dout);
    cuda::glu_backward(stream(), dinp.f32(), inp.f32(), dout.f32(), N, F, kind);
  }

  // ---- residual
  void residual_forward(const TensorView& out, const TensorView& a_in, const TensorView& b_in) override {
    const ArgCheck a(*this, Op::residual, "residual_forward");
    const index_t n = args::residual_forward(a, out, a_in, b_in);
    cuda::residual_forward(stream(), out.f32(), a_in.f32(), b_in.f32(), n);
  }
  void residual_backward(const TensorView& da, const TensorView& db, const TensorView& dout) override {
    const ArgCheck a(*this, Op::residual, "residual_backward");
    const index_t n = args::residual_backward(a, da, db, dout);
    cuda::residual_backward(stream(), da.f32(), db.f32(), dout.f32(), n);
  }

  // ---- softcap
  void softcap_forward(const TensorView& out, const TensorView& inp, float cap) override {
    const ArgCheck a(*this, Op::softcap, "softcap_forward");
    const index_t n = args::softcap_forward(a, out, inp, cap);
    cuda::softcap_forward(stream(), out.f32(), inp.f32(), n, cap);
  }
  void softcap_backward(const TensorView& dinp, const TensorView& out, const TensorView& dout,
                        float cap) override {
    const ArgCheck a(*this, Op::softcap, "softcap_backward");
    const index_t n = args::softcap_backward(a, dinp, out, dout, cap);
    cuda::softcap_backward(stream(), dinp.f32(), out.f32(), dout.f32(), n, cap);
  }

  // ---- losses
  void crossentropy_forward(const TensorView& losses, const TensorView& logits, const TensorView& targets,
                            const TensorView& mask) override {
    const ArgCheck a(*this, Op::crossentropy, "crossentropy_forward");
    const auto [N, V] = args::crossentropy_forward(a, losses, logits, targets, mask);
    reset_bad();
    cuda::crossentropy_forward(stream(), losses.f32(), logits.f32(), targets.i32(), opt(mask), N, V, bad());
    check_targets(a, targets, V);
  }
  void crossentropy_backward(const TensorView& dlogits, const TensorView& logits, const TensorView& targets,
                             const TensorView& dlosses) override {
    const ArgCheck a(*this, Op::crossentropy, "crossentropy_backward");
    const auto [N, V] = args::crossentropy_backward(a, dlogits, logits, targets, dlosses);
    reset_bad();
    cuda::crossentropy_backward(stream(), dlogits.f32(), logits.f32(), targets.i32(), dlosses.f32(), N, V,
                                bad());
    check_targets(a, targets, V);
  }
  void per_sample_loss(const TensorView& sample_loss, const TensorView& tokens, const TensorView& losses,
                       const TensorView& mask) override {
    const ArgCheck a(*this, Op::per_sample_loss, "per_sample_loss");
    const auto [B, T] = args::per_sample_loss(a, sample_loss, tokens, losses, mask);
    cuda::per_sample_loss(stream(), sample_loss.f32(), tokens.f32(), losses.f32(), opt(mask), B, T);
  }

  // ---- optimizer and vector ops
  void adamw_update(const TensorView& param, const TensorView& m, const TensorView& v, const TensorView& grad,
                    const AdamwParams& p) override {
    const ArgCheck a(*this, Op::adamw, "adamw_update");
    const index_t n = args::adamw_update(a, param, m, v, grad, p);
    cuda::adamw_update(stream(), param.f32(), m.f32(), v.f32(), grad.f32(), n, p);
  }
  double sum_squares(const TensorView& x) override {
    const ArgCheck a(*this, Op::sum_squares, "sum_squares");
    const index_t n = args::sum_squares(a, x);
    cuda::sum_squares(stream(), &scratch()->result, scratch()->partials, x.f32(), n);
    return read_back(&scratch()->result);
  }
  double dot(const TensorView& x, const TensorView& y) override {
    const ArgCheck a(*this, Op::dot, "dot");
    const index_t n = args::dot(a, x, y);
    cuda::dot(stream(), &scratch()->result, scratch()->partials, x.f32(), y.f32(), n);
    return read_back(&scratch()->result);
  }
  void scale(const TensorView& x, float s) override {
    const ArgCheck a(*this, Op::scale, "scale");
    const index_t n = args::scale(a, x);
    cuda::scale(stream(), x.f32(), s, n);
  }
  bool all_finite(const TensorView& x) override {
    const ArgCheck a(*this, Op::all_finite, "all_finite");
    const index_t n = args::all_finite(a, x);
    FLOWLM_CUDA_CHECK(cudaMemsetAsync(&scratch()->nonfinite, 0, sizeof(int), stream()));
    cuda::find_nonfinite(stream(), &scratch()->nonfinite, x.f32(), n);
    return read_back(&scratch()->nonfinite) == 0;
  }
  void axpby(const TensorView& y, const TensorView& x, float alpha, float beta) override {
    const ArgCheck a(*this, Op::axpby, "axpby");
    const index_t n = args::axpby(a, y, x);
    cuda::axpby(stream(), y.f32(), x.f32(), n, alpha, beta);
  }
  void sign(const TensorView& out, const TensorView& x) override {
    const ArgCheck a(*this, Op::sign, "sign");
    const index_t n = args::sign(a, out, x);
    cuda::sign(stream(), out.f32(), x.f32(), n);
  }

 private:
  cudaStream_t stream() const { return stream_.get(); }
  Scratch* scratch() const { return static_cast<Scratch*>(scratch_.get()); }
  unsigned long long* bad() const { return &scratch()->bad; }

  // One value from device memory, once the stream has reached this point (a host sync).
  template <class T>
  T read_back(const T* device_value) {
    static_assert(sizeof(T) <= sizeof(double), "the staging buffer holds one double");
    FLOWLM_CUDA_CHECK(
        cudaMemcpyAsync(staging_.get(), device_value, sizeof(T), cudaMemcpyDeviceToHost, stream()));
    synchronize();
    T v;
    std::memcpy(&v, staging_.get(), sizeof(T));
    return v;
  }

  // The bad-id flag: all bytes 0xff is kNoBadIndex; the kernels atomicMin the first bad index into it.
  void reset_bad() { FLOWLM_CUDA_CHECK(cudaMemsetAsync(bad(), 0xff, sizeof(unsigned long long), stream())); }

  // Token ids index rows of a table and come from the data: a bad one is a DataError naming it, as on
  // the host (the flag costs a host sync per call).
  void check_positions(const ArgCheck& a, const TensorView& start, index_t B, index_t T, index_t S) {
    std::vector<std::int32_t> host(static_cast<std::size_t>(B));
    copy_out(host.data(), host.size() * sizeof(std::int32_t), start);
    args::check_positions(a, host.data(), B, T, S);
  }
  void check_tokens(const ArgCheck& a, const TensorView& tokens, index_t V) {
    const unsigned long long i = read_back(bad());
    if (i == kNoBadIndex) return;
    const std::int32_t id = read_back(tokens.i32() + i);
    args::fail_token_id(a, tokens, static_cast<index_t>(i), id, V);
  }
  void check_targets(const ArgCheck& a, const TensorView& targets, index_t V) {
    const unsigned long long row = read_back(bad());
    if (row == kNoBadIndex) return;
    const std::int32_t id = read_back(targets.i32() + row);
    args::fail_target(a, static_cast<index_t>(row), id, V);
  }

  int device_ = 0;
  StreamPtr stream_;
  BlasPtr blas_;
  std::unique_ptr<void, DeviceFree> scratch_;
  std::unique_ptr<void, PinnedFree> staging_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

}  // namespace flowlm::kernels::cuda
