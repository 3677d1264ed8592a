// Reference causal multi-head attention, one (b, h, t) query row at a time, sums in double.
#include <cmath>
#include <vector>

#include "kernels/kernels.hpp"

namespace flowlm::kernels::ref {

// preatt[t2] = q_t . k_t2 / sqrt(hs) for t2 <= t; att = softmax(preatt); out_t = sum_t2 att[t2] v_t2.
void attention_forward(float* out, float* att, const float* qkv, index_t B, index_t T, index_t C,
                       index_t NH) {
  const index_t hs = C / NH, C3 = 3 * C;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  std::vector<double> pre(static_cast<std::size_t>(T));
  for (index_t b = 0; b < B; ++b) {
    for (index_t h = 0; h < NH; ++h) {
      for (index_t t = 0; t < T; ++t) {
        const float* q = qkv + (b * T + t) * C3 + h * hs;
        double maxv = -INFINITY;
        for (index_t t2 = 0; t2 <= t; ++t2) {
          const float* k = qkv + (b * T + t2) * C3 + C + h * hs;
          double s = 0.0;
          for (index_t i = 0; i < hs; ++i) s += static_cast<double>(q[i]) * k[i];
          pre[t2] = s * scale;
          maxv = std::max(maxv, pre[t2]);
        }
        double sum = 0.0;
        for (index_t t2 = 0; t2 <= t; ++t2) {
          pre[t2] = std::exp(pre[t2] - maxv);
          sum += pre[t2];
        }
        float* a = att + ((b * NH + h) * T + t) * T;
        for (index_t t2 = 0; t2 < T; ++t2) a[t2] = t2 <= t ? static_cast<float>(pre[t2] / sum) : 0.0f;
        for (index_t i = 0; i < hs; ++i) {
          double s = 0.0;
          for (index_t t2 = 0; t2 <= t; ++t2)
            s += pre[t2] / sum * qkv[(b * T + t2) * C3 + 2 * C + h * hs + i];
          out[(b * T + t) * C + h * hs + i] = static_cast<float>(s);
        }
      }
    }
  }
}

// datt[t2] = dout_t . v_t2;  dv_t2 += att[t2] dout_t;  dpre[t2] = att[t2] (datt[t2] - sum_j att[j] datt[j]);
// dq_t += scale sum_t2 dpre[t2] k_t2;  dk_t2 += scale dpre[t2] q_t.
void attention_backward(float* dqkv, float* datt, const float* dout, const float* qkv, const float* att,
                        index_t B, index_t T, index_t C, index_t NH) {
  const index_t hs = C / NH, C3 = 3 * C;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
  for (index_t b = 0; b < B; ++b) {
    for (index_t h = 0; h < NH; ++h) {
      for (index_t t = 0; t < T; ++t) {
        const float* a = att + ((b * NH + h) * T + t) * T;
        float* da = datt + ((b * NH + h) * T + t) * T;
        const float* dy = dout + (b * T + t) * C + h * hs;
        const float* q = qkv + (b * T + t) * C3 + h * hs;
        float* dq = dqkv + (b * T + t) * C3 + h * hs;
        double dot = 0.0;
        for (index_t t2 = 0; t2 < T; ++t2) {
          da[t2] = 0.0f;
          if (t2 > t) continue;
          const float* v = qkv + (b * T + t2) * C3 + 2 * C + h * hs;
          float* dv = dqkv + (b * T + t2) * C3 + 2 * C + h * hs;
          double s = 0.0;
          for (index_t i = 0; i < hs; ++i) {
            s += static_cast<double>(dy[i]) * v[i];
            dv[i] += a[t2] * dy[i];
          }
          da[t2] = static_cast<float>(s);
          dot += s * a[t2];
        }
        for (index_t t2 = 0; t2 <= t; ++t2) {
          const double dpre = a[t2] * (da[t2] - dot) * scale;
          const float* k = qkv + (b * T + t2) * C3 + C + h * hs;
          float* dk = dqkv + (b * T + t2) * C3 + C + h * hs;
          for (index_t i = 0; i < hs; ++i) {
            dq[i] += static_cast<float>(dpre * k[i]);
            dk[i] += static_cast<float>(dpre * q[i]);
          }
        }
      }
    }
  }
}

}  // namespace flowlm::kernels::ref
