// Kernel tests: host backend vs the plain reference (parity), finite-difference gradients for
// every backward pass of both, accumulation / null-pointer / in-place semantics, error cases,
// AdamW against a hand-computed example, and run-to-run determinism of the host reductions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "kernels/kernels.hpp"

namespace {

using flowlm::index_t;
using Vec = std::vector<float>;
using IVec = std::vector<std::int32_t>;
namespace host = flowlm::kernels;
namespace ref = flowlm::kernels::ref;

// ---- helpers ----------------------------------------------------------------------------

Vec randn(index_t n, std::mt19937& rng, float stddev = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> d(mean, stddev);
  Vec v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

IVec randint(index_t n, std::int32_t hi, std::mt19937& rng) {
  std::uniform_int_distribution<std::int32_t> d(0, hi - 1);
  IVec v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

// Normalised max error: max_i |got - want| / max(1, max_i |want|) <= tol.
::testing::AssertionResult close(const Vec& got, const Vec& want, double tol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << want.size();
  double scale = 1.0, worst = 0.0;
  std::size_t at = 0;
  for (const float w : want) scale = std::max(scale, std::fabs(static_cast<double>(w)));
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (!(e <= worst) || std::isnan(e)) {
      worst = std::isnan(e) ? std::numeric_limits<double>::infinity() : e;
      at = i;
    }
  }
  if (worst / scale <= tol) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "normalised error " << worst / scale << " > " << tol << " at index " << at << ": got " << got[at]
         << ", want " << want[at] << " (scale " << scale << ")";
}

bool bitwise_equal(const Vec& a, const Vec& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

Vec scaled(const Vec& v, float s) {
  Vec out(v);
  for (auto& x : out) x *= s;
  return out;
}

// Central differences of the scalar objective L on every element of x (perturbed in place), compared
// with the analytic gradient g: |fd - g| <= atol + rtol * |g|. The step actually taken in float is used
// as the denominator. Tolerances (see the callers): forward outputs are float (relative rounding ~6e-8),
// so with outputs of O(1) and a few hundred terms the rounding noise in L is ~1e-6 and contributes
// ~1e-6 / (2 eps) = 5e-5 at eps = 1e-2; the truncation error is O(eps^2 |L'''|) ~ 1e-4 for these smooth
// functions. atol = 2e-3, rtol = 1e-2 leaves margin yet catches any wrong term (errors of O(|g|)).
void check_fd(const std::string& what, Vec& x, const Vec& g, const std::function<double()>& L,
              double eps = 1e-2, double atol = 2e-3, double rtol = 1e-2) {
  ASSERT_EQ(x.size(), g.size()) << what;
  int failures = 0;
  for (std::size_t i = 0; i < x.size() && failures < 5; ++i) {
    const float x0 = x[i];
    const float xp = x0 + static_cast<float>(eps), xm = x0 - static_cast<float>(eps);
    x[i] = xp;
    const double lp = L();
    x[i] = xm;
    const double lm = L();
    x[i] = x0;
    const double fd = (lp - lm) / (static_cast<double>(xp) - xm);
    if (!(std::fabs(fd - g[i]) <= atol + rtol * std::fabs(g[i]))) {
      ++failures;
      ADD_FAILURE() << what << "[" << i << "]: finite difference " << fd << " vs analytic " << g[i];
    }
  }
}

// One backend's kernels, so the same test body runs on host and reference.
struct Ops {
  const char* name;
  decltype(&host::encoder_forward) encoder_forward;
  decltype(&host::encoder_backward) encoder_backward;
  decltype(&host::layernorm_forward) layernorm_forward;
  decltype(&host::layernorm_backward) layernorm_backward;
  decltype(&host::matmul_forward) matmul_forward;
  decltype(&host::matmul_backward) matmul_backward;
  decltype(&host::lm_head_forward) lm_head_forward;
  decltype(&host::lm_head_backward) lm_head_backward;
  decltype(&host::attention_forward) attention_forward;
  decltype(&host::attention_backward) attention_backward;
  decltype(&host::gelu_forward) gelu_forward;
  decltype(&host::gelu_backward) gelu_backward;
  decltype(&host::residual_forward) residual_forward;
  decltype(&host::crossentropy_forward) crossentropy_forward;
  decltype(&host::crossentropy_backward) crossentropy_backward;
  decltype(&host::per_sample_loss) per_sample_loss;
  decltype(&host::adamw_update) adamw_update;
  decltype(&host::sum_squares) sum_squares;
  decltype(&host::scale) scale;
  decltype(&host::all_finite) all_finite;
};

#define FLOWLM_OPS(ns)                                                                                  \
  Ops {                                                                                                 \
#ns, ns::encoder_forward, ns::encoder_backward, ns::layernorm_forward, ns::layernorm_backward,      \
        ns::matmul_forward, ns::matmul_backward, ns::lm_head_forward, ns::lm_head_backward,             \
        ns::attention_forward, ns::attention_backward, ns::gelu_forward, ns::gelu_backward,             \
        ns::residual_forward, ns::crossentropy_forward, ns::crossentropy_backward, ns::per_sample_loss, \
        ns::adamw_update, ns::sum_squares, ns::scale, ns::all_finite                                    \
  }
const Ops kHost = FLOWLM_OPS(host);
void PrintTo(const Ops& ops, std::ostream* os) { *os << ops.name; }
const Ops kRef = FLOWLM_OPS(ref);

struct Dims {
  index_t B, T, C, NH, V;
};
void PrintTo(const Dims& d, std::ostream* os) {
  *os << "B=" << d.B << " T=" << d.T << " C=" << d.C << " NH=" << d.NH << " V=" << d.V;
}

// ---- parity: host vs reference ---------------------------------------------------------
// Tolerance: the reference sums in double, the host in float (BLAS, vectorised reductions, an
// exp approximation within 2 ulp); relative float error over sums of <= a few hundred terms stays
// below ~1e-5 of the tensor's scale, so kTol = 5e-5 (normalised error, see close()).
constexpr double kTol = 5e-5;

class Parity : public ::testing::TestWithParam<Dims> {};

TEST_P(Parity, Encoder) {
  const auto [B, T, C, NH, V] = GetParam();
  (void)NH;
  std::mt19937 rng(1);
  const IVec tok = randint(B * T, static_cast<std::int32_t>(V), rng);
  const Vec wte = randn(V * C, rng), wpe = randn(T * C, rng), dout = randn(B * T * C, rng);
  Vec o1(B * T * C), o2(B * T * C);
  host::encoder_forward(o1.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
  ref::encoder_forward(o2.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
  EXPECT_TRUE(close(o1, o2, 0.0));
  Vec gte1 = randn(V * C, rng), gpe1 = randn(T * C, rng);  // nonzero: backward accumulates
  Vec gte2 = gte1, gpe2 = gpe1;
  host::encoder_backward(gte1.data(), gpe1.data(), dout.data(), tok.data(), B, T, C);
  ref::encoder_backward(gte2.data(), gpe2.data(), dout.data(), tok.data(), B, T, C);
  EXPECT_TRUE(close(gte1, gte2, 1e-6));
  EXPECT_TRUE(close(gpe1, gpe2, 1e-6));
}

TEST_P(Parity, Layernorm) {
  const auto [B, T, C, NH, V] = GetParam();
  (void)NH, (void)V;
  const index_t N = B * T;
  std::mt19937 rng(2);
  const Vec x = randn(N * C, rng, 2.0f, 0.5f), w = randn(C, rng, 0.1f, 1.0f), b = randn(C, rng, 0.1f);
  const Vec dout = randn(N * C, rng);
  Vec o1(N * C), m1(N), r1(N), o2(N * C), m2(N), r2(N);
  host::layernorm_forward(o1.data(), m1.data(), r1.data(), x.data(), w.data(), b.data(), N, C);
  ref::layernorm_forward(o2.data(), m2.data(), r2.data(), x.data(), w.data(), b.data(), N, C);
  EXPECT_TRUE(close(o1, o2, kTol));
  EXPECT_TRUE(close(m1, m2, kTol));
  EXPECT_TRUE(close(r1, r2, kTol));
  Vec dx1 = randn(N * C, rng), dw1 = randn(C, rng), db1 = randn(C, rng);
  Vec dx2 = dx1, dw2 = dw1, db2 = db1;
  host::layernorm_backward(dx1.data(), dw1.data(), db1.data(), dout.data(), x.data(), w.data(), m2.data(),
                           r2.data(), N, C);
  ref::layernorm_backward(dx2.data(), dw2.data(), db2.data(), dout.data(), x.data(), w.data(), m2.data(),
                          r2.data(), N, C);
  EXPECT_TRUE(close(dx1, dx2, kTol));
  EXPECT_TRUE(close(dw1, dw2, kTol));
  EXPECT_TRUE(close(db1, db2, kTol));
}

TEST_P(Parity, MatmulWithAndWithoutBias) {
  const auto [B, T, C, NH, V] = GetParam();
  (void)NH, (void)V;
  const index_t N = B * T, OC = 3 * C + 1;
  std::mt19937 rng(3);
  const Vec x = randn(N * C, rng), w = randn(C * OC, rng, 0.2f), bias = randn(OC, rng),
            dout = randn(N * OC, rng);
  for (const float* bp : {bias.data(), static_cast<const float*>(nullptr)}) {
    Vec o1(N * OC, 7.0f), o2(N * OC, -3.0f);  // garbage: forward overwrites
    host::matmul_forward(o1.data(), x.data(), w.data(), bp, N, C, OC);
    ref::matmul_forward(o2.data(), x.data(), w.data(), bp, N, C, OC);
    EXPECT_TRUE(close(o1, o2, kTol)) << (bp ? "with bias" : "no bias");
  }
  Vec dx1 = randn(N * C, rng), dw1 = randn(C * OC, rng), db1 = randn(OC, rng);
  Vec dx2 = dx1, dw2 = dw1, db2 = db1;
  host::matmul_backward(dx1.data(), dw1.data(), db1.data(), dout.data(), x.data(), w.data(), N, C, OC);
  ref::matmul_backward(dx2.data(), dw2.data(), db2.data(), dout.data(), x.data(), w.data(), N, C, OC);
  EXPECT_TRUE(close(dx1, dx2, kTol));
  EXPECT_TRUE(close(dw1, dw2, kTol));
  EXPECT_TRUE(close(db1, db2, kTol));
  // Null dinp and dbias are skipped; dweight is still accumulated.
  Vec dw3 = dw1;
  host::matmul_backward(nullptr, dw3.data(), nullptr, dout.data(), x.data(), w.data(), N, C, OC);
  ref::matmul_backward(nullptr, dw2.data(), nullptr, dout.data(), x.data(), w.data(), N, C, OC);
  EXPECT_TRUE(close(dw3, dw2, kTol));
}

TEST_P(Parity, LmHead) {
  const auto [B, T, C, NH, V] = GetParam();
  (void)NH;
  const index_t N = B * T;
  std::mt19937 rng(4);
  const Vec x = randn(N * C, rng), wte = randn(V * C, rng, 0.2f), dl = randn(N * V, rng);
  Vec l1(N * V), l2(N * V);
  host::lm_head_forward(l1.data(), x.data(), wte.data(), N, C, V);
  ref::lm_head_forward(l2.data(), x.data(), wte.data(), N, C, V);
  EXPECT_TRUE(close(l1, l2, kTol));
  Vec dx1 = randn(N * C, rng), dw1 = randn(V * C, rng);
  Vec dx2 = dx1, dw2 = dw1;
  host::lm_head_backward(dx1.data(), dw1.data(), dl.data(), x.data(), wte.data(), N, C, V);
  ref::lm_head_backward(dx2.data(), dw2.data(), dl.data(), x.data(), wte.data(), N, C, V);
  EXPECT_TRUE(close(dx1, dx2, kTol));
  EXPECT_TRUE(close(dw1, dw2, kTol));
  host::lm_head_backward(nullptr, dw1.data(), dl.data(), x.data(), wte.data(), N, C, V);
  ref::lm_head_backward(nullptr, dw2.data(), dl.data(), x.data(), wte.data(), N, C, V);
  EXPECT_TRUE(close(dw1, dw2, kTol));
}

TEST_P(Parity, Attention) {
  const auto [B, T, C, NH, V] = GetParam();
  (void)V;
  std::mt19937 rng(5);
  const Vec qkv = randn(B * T * 3 * C, rng), dout = randn(B * T * C, rng);
  Vec o1(B * T * C), a1(B * NH * T * T, 9.0f), o2(B * T * C), a2(B * NH * T * T, -9.0f);
  host::attention_forward(o1.data(), a1.data(), qkv.data(), B, T, C, NH);
  ref::attention_forward(o2.data(), a2.data(), qkv.data(), B, T, C, NH);
  EXPECT_TRUE(close(o1, o2, kTol));
  EXPECT_TRUE(close(a1, a2, kTol));
  // Causal: zero above the diagonal, rows sum to 1.
  for (index_t r = 0; r < B * NH * T; ++r) {
    const index_t t = r % T;
    double s = 0.0;
    for (index_t t2 = 0; t2 < T; ++t2) {
      if (t2 > t) {
        ASSERT_EQ(a1[r * T + t2], 0.0f) << "row " << r << " col " << t2;
      }
      s += a1[r * T + t2];
    }
    ASSERT_NEAR(s, 1.0, 1e-5) << "row " << r;
  }
  Vec dq1 = randn(B * T * 3 * C, rng), dq2 = dq1;
  Vec da1(B * NH * T * T, 5.0f), da2(B * NH * T * T, -5.0f);
  host::attention_backward(dq1.data(), da1.data(), dout.data(), qkv.data(), a2.data(), B, T, C, NH);
  ref::attention_backward(dq2.data(), da2.data(), dout.data(), qkv.data(), a2.data(), B, T, C, NH);
  EXPECT_TRUE(close(dq1, dq2, kTol));
}

TEST_P(Parity, GeluAndResidual) {
  const auto [B, T, C, NH, V] = GetParam();
  (void)NH, (void)V;
  const index_t N = B * T * 4 * C;
  std::mt19937 rng(6);
  Vec x = randn(N, rng, 3.0f);
  x[0] = -30.0f, x[1] = 30.0f, x[2] = 0.0f;  // saturated tails and the origin
  const Vec dout = randn(N, rng);
  Vec o1(N), o2(N);
  host::gelu_forward(o1.data(), x.data(), N);
  ref::gelu_forward(o2.data(), x.data(), N);
  EXPECT_TRUE(close(o1, o2, 1e-6));
  Vec d1 = randn(N, rng), d2 = d1;
  host::gelu_backward(d1.data(), x.data(), dout.data(), N);
  ref::gelu_backward(d2.data(), x.data(), dout.data(), N);
  EXPECT_TRUE(close(d1, d2, 1e-6));
  Vec r1(N), r2 = x;
  host::residual_forward(r1.data(), x.data(), dout.data(), N);
  host::residual_forward(r2.data(), r2.data(), dout.data(), N);  // out aliases a
  Vec r3(N);
  ref::residual_forward(r3.data(), x.data(), dout.data(), N);
  EXPECT_TRUE(close(r1, r3, 0.0));
  EXPECT_TRUE(close(r2, r3, 0.0));
}

TEST_P(Parity, CrossEntropy) {
  const auto [B, T, C, NH, V] = GetParam();
  (void)C, (void)NH;
  const index_t N = B * T;
  std::mt19937 rng(7);
  Vec logits = randn(N * V, rng, 2.0f);
  for (index_t v = 0; v < V; ++v) logits[v] *= 40.0f;  // a row with a wide range (exp underflow)
  IVec tg = randint(N, static_cast<std::int32_t>(V), rng);
  Vec mask(N, 1.0f), dl(N);
  for (index_t n = 0; n < N; n += 3) {
    mask[n] = 0.0f;
    tg[n] = -1;  // masked rows may carry any target (e.g. padding)
  }
  for (index_t n = 0; n < N; ++n) dl[n] = mask[n] * (0.5f + static_cast<float>(n % 4));
  Vec l1(N, 3.0f), l2(N, 4.0f);
  host::crossentropy_forward(l1.data(), logits.data(), tg.data(), mask.data(), N, V);
  ref::crossentropy_forward(l2.data(), logits.data(), tg.data(), mask.data(), N, V);
  EXPECT_TRUE(close(l1, l2, kTol));
  for (index_t n = 0; n < N; n += 3) EXPECT_EQ(l1[n], 0.0f) << "masked row " << n;
  Vec g1(N * V, 1.0f), g2(N * V, 2.0f);  // garbage: backward overwrites
  host::crossentropy_backward(g1.data(), logits.data(), tg.data(), dl.data(), N, V);
  ref::crossentropy_backward(g2.data(), logits.data(), tg.data(), dl.data(), N, V);
  EXPECT_TRUE(close(g1, g2, kTol));
  for (index_t n = 0; n < N; n += 3) {
    for (index_t v = 0; v < V; ++v) ASSERT_EQ(g1[n * V + v], 0.0f) << "masked row " << n;
  }
  // In place (dlogits == logits) gives the same result, on both backends.
  Vec inplace = logits;
  host::crossentropy_backward(inplace.data(), inplace.data(), tg.data(), dl.data(), N, V);
  EXPECT_TRUE(bitwise_equal(inplace, g1));
  inplace = logits;
  ref::crossentropy_backward(inplace.data(), inplace.data(), tg.data(), dl.data(), N, V);
  EXPECT_TRUE(bitwise_equal(inplace, g2));
  // Null mask: every row counts.
  for (auto& t : tg) t = std::max(t, 0);
  host::crossentropy_forward(l1.data(), logits.data(), tg.data(), nullptr, N, V);
  ref::crossentropy_forward(l2.data(), logits.data(), tg.data(), nullptr, N, V);
  EXPECT_TRUE(close(l1, l2, kTol));
  EXPECT_GT(l1[0], 0.0f);
}

TEST_P(Parity, PerSampleLoss) {
  const auto [B, T, C, NH, V] = GetParam();
  (void)C, (void)NH, (void)V;
  std::mt19937 rng(8);
  const Vec losses = randn(B * T, rng, 1.0f, 3.0f);
  Vec mask(B * T);
  for (index_t i = 0; i < B * T; ++i) mask[i] = (i % 5 < 2) ? 0.0f : 1.0f;
  for (index_t t = 0; t < T; ++t) mask[t] = 0.0f;  // sample 0 has no counted token
  Vec s1(B, 9.0f), n1(B, 9.0f), s2(B), n2(B);
  host::per_sample_loss(s1.data(), n1.data(), losses.data(), mask.data(), B, T);
  ref::per_sample_loss(s2.data(), n2.data(), losses.data(), mask.data(), B, T);
  EXPECT_TRUE(close(s1, s2, 1e-6));
  EXPECT_TRUE(close(n1, n2, 0.0));
  EXPECT_EQ(s1[0], 0.0f);
  EXPECT_EQ(n1[0], 0.0f);
  host::per_sample_loss(s1.data(), n1.data(), losses.data(), nullptr, B, T);
  for (index_t b = 0; b < B; ++b) {
    double s = 0.0;
    for (index_t t = 0; t < T; ++t) s += losses[b * T + t];
    EXPECT_EQ(n1[b], static_cast<float>(T));
    EXPECT_NEAR(s1[b], s / static_cast<double>(T), 1e-5);
  }
}

TEST_P(Parity, AdamwAndReductions) {
  const auto [B, T, C, NH, V] = GetParam();
  (void)NH;
  const index_t n = B * T * C + V;
  std::mt19937 rng(9);
  Vec p1 = randn(n, rng), m1(n, 0.0f), v1(n, 0.0f);
  Vec p2 = p1, m2 = m1, v2 = v1;
  for (long step = 1; step <= 3; ++step) {
    const Vec g = randn(n, rng);
    host::adamw_update(p1.data(), m1.data(), v1.data(), g.data(), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f,
                       step);
    ref::adamw_update(p2.data(), m2.data(), v2.data(), g.data(), n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f,
                      step);
  }
  EXPECT_TRUE(close(p1, p2, 1e-6));
  EXPECT_TRUE(close(m1, m2, 1e-6));
  EXPECT_TRUE(close(v1, v2, 1e-6));
  EXPECT_NEAR(host::sum_squares(p1.data(), n), ref::sum_squares(p1.data(), n),
              1e-9 * ref::sum_squares(p1.data(), n));
  Vec s1 = p1, s2 = p1;
  host::scale(s1.data(), -0.25f, n);
  ref::scale(s2.data(), -0.25f, n);
  EXPECT_TRUE(close(s1, s2, 0.0));
}

// Awkward small sizes, then one larger case (several row chunks and attention GEMM blocks of 64
// rows with a partial last block, hs = 24).
INSTANTIATE_TEST_SUITE_P(Kernels, Parity, ::testing::Values(Dims{3, 7, 12, 3, 37}, Dims{3, 130, 96, 4, 301}));

TEST(KernelsParity, CrossEntropyGpt2Vocab) {
  const index_t N = 6, V = 50257;
  std::mt19937 rng(10);
  const Vec logits = randn(N * V, rng, 3.0f);
  const IVec tg = randint(N, static_cast<std::int32_t>(V), rng);
  const Vec dl(N, 1.0f / N);
  Vec l1(N), l2(N), g1(N * V), g2(N * V);
  host::crossentropy_forward(l1.data(), logits.data(), tg.data(), nullptr, N, V);
  ref::crossentropy_forward(l2.data(), logits.data(), tg.data(), nullptr, N, V);
  EXPECT_TRUE(close(l1, l2, kTol));
  host::crossentropy_backward(g1.data(), logits.data(), tg.data(), dl.data(), N, V);
  ref::crossentropy_backward(g2.data(), logits.data(), tg.data(), dl.data(), N, V);
  EXPECT_TRUE(close(g1, g2, 1e-6));
}

// ---- per-backend semantics and finite differences ------------------------------------

class Backend : public ::testing::TestWithParam<Ops> {};

// Small sizes for finite differences: every element of every input is checked.
constexpr Dims kFd{2, 5, 8, 2, 11};

TEST_P(Backend, EncoderGradients) {
  const Ops& k = GetParam();
  const auto [B, T, C, NH, V] = kFd;
  (void)NH;
  std::mt19937 rng(11);
  IVec tok = randint(B * T, static_cast<std::int32_t>(V), rng);
  tok[1] = tok[0], tok[T] = tok[0];  // repeated tokens: their gradients add up
  Vec wte = randn(V * C, rng), wpe = randn(T * C, rng);
  const Vec R = randn(B * T * C, rng);
  Vec out(B * T * C);
  auto L = [&] {
    k.encoder_forward(out.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
    return dot(out, R);
  };
  Vec gte(V * C, 0.0f), gpe(T * C, 0.0f);
  k.encoder_backward(gte.data(), gpe.data(), R.data(), tok.data(), B, T, C);
  check_fd("dwte", wte, gte, L);
  check_fd("dwpe", wpe, gpe, L);
  const Vec gte1 = gte, gpe1 = gpe;  // a second call accumulates: twice the gradient
  k.encoder_backward(gte.data(), gpe.data(), R.data(), tok.data(), B, T, C);
  EXPECT_TRUE(close(gte, scaled(gte1, 2.0f), 1e-6));
  EXPECT_TRUE(close(gpe, scaled(gpe1, 2.0f), 1e-6));
}

TEST_P(Backend, LayernormGradients) {
  const Ops& k = GetParam();
  const index_t N = 6, C = 10;
  std::mt19937 rng(12);
  Vec x = randn(N * C, rng, 1.5f, 0.3f), w = randn(C, rng, 0.3f, 1.0f), b = randn(C, rng, 0.3f);
  const Vec R = randn(N * C, rng);
  Vec out(N * C), mean(N), rstd(N);
  auto L = [&] {
    k.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    return dot(out, R);
  };
  L();
  Vec dx(N * C, 0.0f), dw(C, 0.0f), db(C, 0.0f);
  k.layernorm_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), mean.data(),
                       rstd.data(), N, C);
  check_fd("dinp", x, dx, L);
  check_fd("dweight", w, dw, L);
  check_fd("dbias", b, db, L);
  const Vec dx1 = dx, dw1 = dw, db1 = db;
  k.layernorm_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), mean.data(),
                       rstd.data(), N, C);
  EXPECT_TRUE(close(dx, scaled(dx1, 2.0f), 1e-6));
  EXPECT_TRUE(close(dw, scaled(dw1, 2.0f), 1e-6));
  EXPECT_TRUE(close(db, scaled(db1, 2.0f), 1e-6));
}

TEST_P(Backend, MatmulGradients) {
  const Ops& k = GetParam();
  const index_t N = 7, C = 6, OC = 9;
  std::mt19937 rng(13);
  Vec x = randn(N * C, rng), w = randn(C * OC, rng), bias = randn(OC, rng);
  const Vec R = randn(N * OC, rng);
  Vec out(N * OC);
  auto L = [&] {
    k.matmul_forward(out.data(), x.data(), w.data(), bias.data(), N, C, OC);
    return dot(out, R);
  };
  Vec dx(N * C, 0.0f), dw(C * OC, 0.0f), db(OC, 0.0f);
  k.matmul_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), N, C, OC);
  check_fd("dinp", x, dx, L);
  check_fd("dweight", w, dw, L);
  check_fd("dbias", bias, db, L);
  const Vec dx1 = dx, dw1 = dw, db1 = db;
  k.matmul_backward(dx.data(), dw.data(), db.data(), R.data(), x.data(), w.data(), N, C, OC);
  EXPECT_TRUE(close(dx, scaled(dx1, 2.0f), 1e-6));
  EXPECT_TRUE(close(dw, scaled(dw1, 2.0f), 1e-6));
  EXPECT_TRUE(close(db, scaled(db1, 2.0f), 1e-6));
  // Null dinp / dbias are skipped: dweight still gains exactly one more gradient.
  k.matmul_backward(nullptr, dw.data(), nullptr, R.data(), x.data(), w.data(), N, C, OC);
  EXPECT_TRUE(close(dw, scaled(dw1, 3.0f), 1e-6));
}

TEST_P(Backend, LmHeadGradients) {
  const Ops& k = GetParam();
  const auto [B, T, C, NH, V] = kFd;
  (void)NH;
  const index_t N = B * T;
  std::mt19937 rng(14);
  Vec x = randn(N * C, rng), wte = randn(V * C, rng);
  const Vec R = randn(N * V, rng);
  Vec logits(N * V);
  auto L = [&] {
    k.lm_head_forward(logits.data(), x.data(), wte.data(), N, C, V);
    return dot(logits, R);
  };
  Vec dx(N * C, 0.0f), dw(V * C, 0.0f);
  k.lm_head_backward(dx.data(), dw.data(), R.data(), x.data(), wte.data(), N, C, V);
  check_fd("dinp", x, dx, L);
  check_fd("dwte", wte, dw, L);
  const Vec dx1 = dx, dw1 = dw;
  k.lm_head_backward(dx.data(), dw.data(), R.data(), x.data(), wte.data(), N, C, V);
  EXPECT_TRUE(close(dx, scaled(dx1, 2.0f), 1e-6));
  EXPECT_TRUE(close(dw, scaled(dw1, 2.0f), 1e-6));
  k.lm_head_backward(nullptr, dw.data(), R.data(), x.data(), wte.data(), N, C, V);
  EXPECT_TRUE(close(dw, scaled(dw1, 3.0f), 1e-6));
}

TEST_P(Backend, AttentionGradients) {
  const Ops& k = GetParam();
  const index_t B = 2, T = 5, C = 12, NH = 3;
  std::mt19937 rng(15);
  Vec qkv = randn(B * T * 3 * C, rng);
  const Vec R = randn(B * T * C, rng);
  Vec out(B * T * C), att(B * NH * T * T), datt(B * NH * T * T);
  auto L = [&] {
    k.attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
    return dot(out, R);
  };
  L();
  Vec dqkv(B * T * 3 * C, 0.0f);
  k.attention_backward(dqkv.data(), datt.data(), R.data(), qkv.data(), att.data(), B, T, C, NH);
  check_fd("dqkv", qkv, dqkv, L);
  L();
  const Vec d1 = dqkv;
  k.attention_backward(dqkv.data(), datt.data(), R.data(), qkv.data(), att.data(), B, T, C, NH);
  EXPECT_TRUE(close(dqkv, scaled(d1, 2.0f), 1e-6));
}

TEST_P(Backend, GeluGradients) {
  const Ops& k = GetParam();
  const index_t N = 64;
  std::mt19937 rng(16);
  Vec x = randn(N, rng, 2.5f);
  const Vec R = randn(N, rng);
  Vec out(N);
  auto L = [&] {
    k.gelu_forward(out.data(), x.data(), N);
    return dot(out, R);
  };
  Vec dx(N, 0.0f);
  k.gelu_backward(dx.data(), x.data(), R.data(), N);
  check_fd("dinp", x, dx, L);
  const Vec d1 = dx;
  k.gelu_backward(dx.data(), x.data(), R.data(), N);
  EXPECT_TRUE(close(dx, scaled(d1, 2.0f), 1e-6));
}

TEST_P(Backend, CrossEntropyGradients) {
  const Ops& k = GetParam();
  const index_t N = 8, V = 13;
  std::mt19937 rng(17);
  Vec logits = randn(N * V, rng, 2.0f);
  IVec tg = randint(N, static_cast<std::int32_t>(V), rng);
  Vec mask(N, 1.0f), dl(N);
  mask[2] = mask[5] = 0.0f;
  tg[5] = static_cast<std::int32_t>(V) + 100;  // ignored: the row is masked
  for (index_t n = 0; n < N; ++n) dl[n] = mask[n] * (0.25f + 0.1f * static_cast<float>(n));
  Vec losses(N);
  // L = sum(dlosses * losses): its gradient is crossentropy_backward(dlosses).
  auto L = [&] {
    k.crossentropy_forward(losses.data(), logits.data(), tg.data(), mask.data(), N, V);
    return dot(dl, losses);
  };
  Vec g(N * V);
  k.crossentropy_backward(g.data(), logits.data(), tg.data(), dl.data(), N, V);
  check_fd("dlogits", logits, g, L);
  L();
  EXPECT_EQ(losses[2], 0.0f);
  EXPECT_EQ(losses[5], 0.0f);
  for (index_t v = 0; v < V; ++v) {
    EXPECT_EQ(g[2 * V + v], 0.0f);
    EXPECT_EQ(g[5 * V + v], 0.0f);
  }
  // Each counted row's gradient sums to 0 (softmax minus one-hot), times dloss.
  for (index_t n = 0; n < N; ++n) {
    double s = 0.0;
    for (index_t v = 0; v < V; ++v) s += g[n * V + v];
    EXPECT_NEAR(s, 0.0, 1e-6) << "row " << n;
  }
}

TEST_P(Backend, CrossEntropyRejectsBadTarget) {
  const Ops& k = GetParam();
  const index_t N = 5, V = 7;
  std::mt19937 rng(18);
  const Vec logits = randn(N * V, rng);
  Vec losses(N), mask(N, 1.0f), dl(N, 1.0f), g(N * V);
  for (const std::int32_t bad : {static_cast<std::int32_t>(V), 4242, -3}) {
    IVec tg = randint(N, static_cast<std::int32_t>(V), rng);
    tg[3] = bad;
    try {
      k.crossentropy_forward(losses.data(), logits.data(), tg.data(), mask.data(), N, V);
      ADD_FAILURE() << k.name << ": no DataError for target " << bad;
    } catch (const flowlm::DataError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(std::to_string(bad)), std::string::npos) << msg;
      EXPECT_NE(msg.find("row 3"), std::string::npos) << msg;
    }
    EXPECT_THROW(k.crossentropy_backward(g.data(), logits.data(), tg.data(), dl.data(), N, V),
                 flowlm::DataError);
    mask[3] = 0.0f;  // the same row masked out is fine
    EXPECT_NO_THROW(k.crossentropy_forward(losses.data(), logits.data(), tg.data(), mask.data(), N, V));
    EXPECT_EQ(losses[3], 0.0f);
    mask[3] = 1.0f;
  }
}

TEST_P(Backend, AdamwTwoSteps) {
  const Ops& k = GetParam();
  // lr 0.1, betas (0.9, 0.999), eps 1e-8, weight decay 0.01, grad_scale 0.5.
  // Step 1: m_hat / sqrt(v_hat) = sign(g), so p -= 0.1 * (sign(g) + 0.01 p) (for g = 0 only the decay):
  //   1 -> 0.899, -2 -> -1.898, 0.5 -> 0.4995.  Step 2 worked through the same formulas in double.
  Vec p{1.0f, -2.0f, 0.5f}, m(3, 0.0f), v(3, 0.0f);
  const Vec g1{0.1f, -0.2f, 0.0f}, g2{0.3f, 0.1f, -0.4f};
  k.adamw_update(p.data(), m.data(), v.data(), g1.data(), 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, 1);
  EXPECT_NEAR(p[0], 0.899, 1e-6);
  EXPECT_NEAR(p[1], -1.898, 1e-6);
  EXPECT_NEAR(p[2], 0.4995, 1e-6);
  // m and v carry float's rounding of 1 - beta (1 - 0.999f is off by 1.3e-5 relative).
  EXPECT_NEAR(m[0], 0.005, 0.005 * 2e-5);
  EXPECT_NEAR(v[1], 1e-5, 1e-5 * 2e-5);
  k.adamw_update(p.data(), m.data(), v.data(), g2.data(), 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, 2);
  EXPECT_NEAR(p[0], 0.806322916, 2e-6);
  EXPECT_NEAR(p[1], -1.86946831, 2e-6);
  EXPECT_NEAR(p[2], 0.573414177, 2e-6);
  EXPECT_NEAR(m[2], -0.02, 1e-8);
  EXPECT_NEAR(v[0], 2.49975e-05, 2.49975e-05 * 2e-5);
}

TEST_P(Backend, ReductionsSeeNanAndInf) {
  const Ops& k = GetParam();
  const index_t n = 20001;  // several host blocks
  Vec x(n, 0.5f);
  EXPECT_NEAR(k.sum_squares(x.data(), n), 0.25 * n, 1e-9);
  EXPECT_TRUE(k.all_finite(x.data(), n));
  const Vec y{1.0f, 2.0f, 3.0f};
  EXPECT_EQ(k.sum_squares(y.data(), 3), 14.0);
  for (const float bad :
       {std::nanf(""), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
    for (const index_t at : {index_t{0}, index_t{9000}, n - 1}) {
      Vec z = x;
      z[at] = bad;
      EXPECT_FALSE(k.all_finite(z.data(), n)) << bad << " at " << at;
      EXPECT_FALSE(std::isfinite(k.sum_squares(z.data(), n))) << bad << " at " << at;
    }
  }
  x[5] = std::numeric_limits<float>::max();  // large but finite
  EXPECT_TRUE(k.all_finite(x.data(), n));
  k.scale(x.data(), 0.0f, n);
  EXPECT_EQ(k.sum_squares(x.data(), n), 0.0);
}

std::string backend_name(const ::testing::TestParamInfo<Ops>& p) { return p.param.name; }
INSTANTIATE_TEST_SUITE_P(Kernels, Backend, ::testing::Values(kHost, kRef), backend_name);

// ---- host determinism: reductions over rows give bitwise identical results run to run ----

TEST(KernelsHost, BackwardIsBitwiseReproducible) {
  const index_t B = 3, T = 80, C = 40, NH = 4, V = 29, N = B * T;
  std::mt19937 rng(19);
  const Vec x = randn(N * C, rng), w = randn(C, rng), dout = randn(N * C, rng), mean = randn(N, rng);
  Vec rstd = randn(N, rng, 0.1f, 1.0f);
  const IVec tok = randint(N, static_cast<std::int32_t>(V), rng);
  const Vec qkv = randn(N * 3 * C, rng), wmm = randn(C * C, rng);
  Vec att(B * NH * T * T), out(N * C), datt(B * NH * T * T);
  host::attention_forward(out.data(), att.data(), qkv.data(), B, T, C, NH);
  auto run = [&] {
    std::vector<Vec> r{Vec(N * C, 0.0f), Vec(C, 0.0f), Vec(C, 0.0f),        Vec(V * C, 0.0f),
                       Vec(T * C, 0.0f), Vec(C, 0.0f), Vec(N * 3 * C, 0.0f)};
    host::layernorm_backward(r[0].data(), r[1].data(), r[2].data(), dout.data(), x.data(), w.data(),
                             mean.data(), rstd.data(), N, C);
    host::encoder_backward(r[3].data(), r[4].data(), dout.data(), tok.data(), B, T, C);
    Vec dw(C * C, 0.0f);
    host::matmul_backward(nullptr, dw.data(), r[5].data(), dout.data(), x.data(), wmm.data(), N, C, C);
    host::attention_backward(r[6].data(), datt.data(), out.data(), qkv.data(), att.data(), B, T, C, NH);
    return r;
  };
  const auto a = run(), b = run();
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(bitwise_equal(a[i], b[i])) << "output " << i;
}

}  // namespace
