// Host gated MLP activations (swiglu: Llama, geglu: Gemma) on a packed [N, 2F] gate/up buffer,
// one row per work item so that the inner loops are contiguous and vectorize.
#include "kernels/host/activation.hpp"
#include "kernels/host/parallel.hpp"
#include "kernels/kernels.hpp"

namespace flowlm::kernels {

using host::host_range;

namespace {
template <class Act>
void glu_forward_rows(float* out, const float* inp, index_t N, index_t F, Act act) {
  Kokkos::parallel_for("flowlm::glu_forward", host_range(N), [=](const index_t n) {
    const float* g = inp + n * 2 * F;
    const float* u = g + F;
    float* o = out + n * F;
    for (index_t f = 0; f < F; ++f) o[f] = act(g[f]) * u[f];
  });
}

template <class Act, class Grad>
void glu_backward_rows(float* dinp, const float* inp, const float* dout, index_t N, index_t F, Act act,
                       Grad grad) {
  Kokkos::parallel_for("flowlm::glu_backward", host_range(N), [=](const index_t n) {
    const float* g = inp + n * 2 * F;
    const float* u = g + F;
    const float* dy = dout + n * F;
    float* dg = dinp + n * 2 * F;
    float* du = dg + F;
    for (index_t f = 0; f < F; ++f) {
      dg[f] += dy[f] * u[f] * grad(g[f]);
      du[f] += dy[f] * act(g[f]);
    }
  });
}
}  // namespace

// out[n, f] = act(gate[n, f]) * up[n, f], gate = inp[n, :F], up = inp[n, F:].
void glu_forward(float* out, const float* inp, index_t N, index_t F, GluKind kind) {
  if (kind == GluKind::swiglu)
    glu_forward_rows(out, inp, N, F, [](float x) { return host::silu(x); });
  else
    glu_forward_rows(out, inp, N, F, [](float x) { return host::gelu_tanh(x); });
}

// d gate += dout * up * act'(gate), d up += dout * act(gate).
void glu_backward(float* dinp, const float* inp, const float* dout, index_t N, index_t F, GluKind kind) {
  if (kind == GluKind::swiglu)
    glu_backward_rows(
        dinp, inp, dout, N, F, [](float x) { return host::silu(x); },
        [](float x) { return host::silu_grad(x); });
  else
    glu_backward_rows(
        dinp, inp, dout, N, F, [](float x) { return host::gelu_tanh(x); },
        [](float x) { return host::gelu_tanh_grad(x); });
}

}  // namespace flowlm::kernels
