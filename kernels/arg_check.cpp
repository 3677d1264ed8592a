#include "kernels/arg_check.hpp"

#include <initializer_list>
#include <utility>

namespace flowlm::kernels::args {

namespace {

using Named = std::initializer_list<std::pair<const char*, const TensorView*>>;

// `ref` and every other named tensor: present floats of the same shape; returns the element count.
index_t check_same(const ArgCheck& a, const TensorView& ref, Named others, const char* ref_name = "inp") {
  a.floats(ref_name, ref);
  for (const auto& [name, v] : others) {
    a.floats(name, *v);
    a.shape(name, *v, ref.shape);
  }
  return ref.numel();
}

// inp [..., C] with weight [C]; each named tensor has inp's shape. Returns (N, C).
RowDims check_norm(const ArgCheck& a, const TensorView& inp, const TensorView& weight, Named same_as_inp) {
  check_same(a, inp, same_as_inp);
  const index_t C = a.last_dim("inp", inp);
  a.floats("weight", weight);
  a.shape("weight", weight, {C});
  return {inp.numel() / C, C};
}

// out [B, T, C] from tokens [B, T], table [V, C] and the optional pos [>= T, C].
EmbeddingDims check_embedding(const ArgCheck& a, const char* out_name, const TensorView& out,
                              const TensorView& tokens, const char* table_name, const TensorView& table,
                              const char* pos_name, const TensorView& pos) {
  a.ids("tokens", tokens);
  a.rank("tokens", tokens, 2);
  a.floats(table_name, table);
  a.rank(table_name, table, 2);
  const index_t B = tokens.shape[0], T = tokens.shape[1], V = table.shape[0], C = table.shape[1];
  a.floats(out_name, out);
  a.shape(out_name, out, {B, T, C});
  if (a.optional_floats(pos_name, pos)) {
    a.require(pos.rank() == 2 && pos.shape[0] >= T && pos.shape[1] == C,
              "{} has shape {}, expected [>= {}, {}] (a row per position t < T)", pos_name,
              shape_str(pos.shape), T, C);
  }
  return {B, T, V, C};
}

// inp [..., C] and weight [C, OC] (conv1d) or [OC, C] (linear).
MatmulDims check_matmul(const ArgCheck& a, const TensorView& inp, const TensorView& weight,
                        WeightLayout layout) {
  a.floats("inp", inp);
  a.floats("weight", weight);
  const index_t C = a.last_dim("inp", inp);
  a.rank("weight", weight, 2);
  const bool conv1d = layout == WeightLayout::conv1d;
  const index_t in_dim = conv1d ? weight.shape[0] : weight.shape[1];
  const index_t OC = conv1d ? weight.shape[1] : weight.shape[0];
  a.require(in_dim == C, "weight has shape {}, expected {} for inp {} ({} layout: {})",
            shape_str(weight.shape), conv1d ? shape_str({C, OC}) : shape_str({OC, C}), shape_str(inp.shape),
            conv1d ? "conv1d" : "linear", conv1d ? "[C, OC]" : "[OC, C]");
  return {inp.numel() / C, C, OC};
}

void check_heads(const ArgCheck& a, index_t n_head, index_t n_kv_head, index_t head_dim) {
  a.require(n_head > 0 && n_kv_head > 0 && head_dim > 0,
            "n_head = {}, n_kv_head = {}, head_dim = {}: all must be positive", n_head, n_kv_head, head_dim);
  a.require(n_head % n_kv_head == 0, "n_head = {} is not a multiple of n_kv_head = {}", n_head, n_kv_head);
}

// qkv [B, T, (NH + 2 KVH) hd].
SeqDims check_qkv(const ArgCheck& a, const char* name, const TensorView& qkv, index_t NH, index_t KVH,
                  index_t hd) {
  a.rank(name, qkv, 3);
  a.require(qkv.shape[2] == (NH + 2 * KVH) * hd,
            "{} has shape {}, expected [B, T, {}] = [B, T, (n_head + 2 n_kv_head) head_dim] for n_head {}, "
            "n_kv_head {}, head_dim {}",
            name, shape_str(qkv.shape), (NH + 2 * KVH) * hd, NH, KVH, hd);
  return {qkv.shape[0], qkv.shape[1]};
}

// qkv [B, T, (NH + 2 KVH) hd], the output-sized y [B, T, NH hd] and att [B, NH, T, T].
SeqDims check_attention(const ArgCheck& a, const TensorView& qkv, const TensorView& y, const char* y_name,
                        const TensorView& att, const AttentionParams& p) {
  check_heads(a, p.n_head, p.n_kv_head, p.head_dim);
  a.require(p.scale >= 0.0f && p.softcap >= 0.0f && p.window >= 0,
            "scale = {}, softcap = {}, window = {}: none may be negative (0 means the default / none)",
            p.scale, p.softcap, p.window);
  a.floats("qkv", qkv);
  const SeqDims d = check_qkv(a, "qkv", qkv, p.n_head, p.n_kv_head, p.head_dim);
  a.floats(y_name, y);
  a.shape(y_name, y, {d.B, d.T, p.n_head * p.head_dim});
  a.floats("att", att);
  a.shape("att", att, {d.B, p.n_head, d.T, d.T});
  return d;
}

// inp [..., 2F] and y [..., F] with the same rows. Returns (N, F).
RowDims check_glu(const ArgCheck& a, const TensorView& inp, const TensorView& y, const char* y_name) {
  a.floats("inp", inp);
  const index_t F2 = a.last_dim("inp", inp);
  a.require(F2 % 2 == 0, "inp has shape {}: the last dim must be even (gate and up halves)",
            shape_str(inp.shape));
  const index_t N = inp.numel() / F2, F = F2 / 2;
  a.floats(y_name, y);
  a.rows(y_name, y, N, F);
  return {N, F};
}

// logits [..., V] and targets with one id per row. Returns (N, V).
RowDims check_logits(const ArgCheck& a, const TensorView& logits, const TensorView& targets) {
  a.floats("logits", logits);
  const index_t V = a.last_dim("logits", logits);
  const index_t N = logits.numel() / V;
  a.ids("targets", targets);
  a.numel("targets", targets, N);
  return {N, V};
}

}  // namespace

// ---- memory

void alloc(const Backend& be, const Shape& shape) {
  for (const index_t d : shape) {
    if (d < 0) fail<Error>("{}: alloc: negative dimension in shape {}", be.name(), shape_str(shape));
  }
}

void copy(const Backend& be, const char* fn, const TensorView& v, std::size_t bytes) {
  if (!v.present()) fail<Error>("{}: {}: the view is absent (null data)", be.name(), fn);
  if (v.device != be.device())
    fail<Error>("{}: {}: the view {} is on {}, not {} memory", be.name(), fn, shape_str(v.shape),
                device_name(v.device), device_name(be.device()));
  if (bytes != v.bytes())
    fail<Error>("{}: {}: {} bytes for a {} {} view of {} bytes", be.name(), fn, bytes, dtype_name(v.dtype),
                shape_str(v.shape), v.bytes());
}

// ---- embedding

EmbeddingDims embedding_forward(const ArgCheck& a, const TensorView& out, const TensorView& tokens,
                                const TensorView& wte, const TensorView& wpe) {
  return check_embedding(a, "out", out, tokens, "wte", wte, "wpe", wpe);
}

EmbeddingDims embedding_backward(const ArgCheck& a, const TensorView& dwte, const TensorView& dwpe,
                                 const TensorView& dout, const TensorView& tokens) {
  return check_embedding(a, "dout", dout, tokens, "dwte", dwte, "dwpe", dwpe);
}

// ---- norms

RowDims layernorm_forward(const ArgCheck& a, const TensorView& out, const TensorView& mean,
                          const TensorView& rstd, const TensorView& inp, const TensorView& weight,
                          const TensorView& bias, float eps) {
  const RowDims d = check_norm(a, inp, weight, {{"out", &out}});
  a.floats("mean", mean);
  a.floats("rstd", rstd);
  a.floats("bias", bias);
  a.numel("mean", mean, d.N);
  a.numel("rstd", rstd, d.N);
  a.shape("bias", bias, {d.C});
  a.require(eps >= 0.0f, "eps = {} must be >= 0", eps);
  return d;
}

RowDims layernorm_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& dweight,
                           const TensorView& dbias, const TensorView& dout, const TensorView& inp,
                           const TensorView& weight, const TensorView& mean, const TensorView& rstd) {
  const RowDims d = check_norm(a, inp, weight, {{"dinp", &dinp}, {"dout", &dout}});
  for (const auto& [name, v] : {std::pair{"dweight", &dweight}, std::pair{"dbias", &dbias}}) {
    a.floats(name, *v);
    a.shape(name, *v, {d.C});
  }
  a.floats("mean", mean);
  a.floats("rstd", rstd);
  a.numel("mean", mean, d.N);
  a.numel("rstd", rstd, d.N);
  return d;
}

RowDims rmsnorm_forward(const ArgCheck& a, const TensorView& out, const TensorView& rstd,
                        const TensorView& inp, const TensorView& weight, const RmsnormParams& p) {
  const RowDims d = check_norm(a, inp, weight, {{"out", &out}});
  a.floats("rstd", rstd);
  a.numel("rstd", rstd, d.N);
  a.require(p.eps >= 0.0f, "eps = {} must be >= 0", p.eps);
  return d;
}

RowDims rmsnorm_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& dweight,
                         const TensorView& dout, const TensorView& inp, const TensorView& weight,
                         const TensorView& rstd) {
  const RowDims d = check_norm(a, inp, weight, {{"dinp", &dinp}, {"dout", &dout}});
  a.floats("dweight", dweight);
  a.shape("dweight", dweight, {d.C});
  a.floats("rstd", rstd);
  a.numel("rstd", rstd, d.N);
  return d;
}

// ---- matmul

MatmulDims matmul_forward(const ArgCheck& a, const TensorView& out, const TensorView& inp,
                          const TensorView& weight, const TensorView& bias, WeightLayout layout) {
  const MatmulDims d = check_matmul(a, inp, weight, layout);
  a.floats("out", out);
  a.rows("out", out, d.N, d.OC);
  if (a.optional_floats("bias", bias)) a.shape("bias", bias, {d.OC});
  return d;
}

MatmulDims matmul_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& dweight,
                           const TensorView& dbias, const TensorView& dout, const TensorView& inp,
                           const TensorView& weight, WeightLayout layout) {
  const MatmulDims d = check_matmul(a, inp, weight, layout);
  a.floats("dout", dout);
  a.rows("dout", dout, d.N, d.OC);
  if (a.optional_floats("dinp", dinp)) a.shape("dinp", dinp, inp.shape);
  if (a.optional_floats("dweight", dweight)) a.shape("dweight", dweight, weight.shape);
  if (a.optional_floats("dbias", dbias)) a.shape("dbias", dbias, {d.OC});
  return d;
}

// ---- rope and attention

SeqDims rope(const ArgCheck& a, const char* name, const TensorView& qkv, const RopeParams& p) {
  check_heads(a, p.n_head, p.n_kv_head, p.head_dim);
  a.require(p.head_dim % 2 == 0, "head_dim = {} must be even (rotate-half pairs x[i] with x[i + hd/2])",
            p.head_dim);
  a.require(p.theta > 0.0f, "theta = {} must be > 0", p.theta);
  a.floats(name, qkv);
  return check_qkv(a, name, qkv, p.n_head, p.n_kv_head, p.head_dim);
}

SeqDims rope_at(const ArgCheck& a, const TensorView& qkv, const TensorView& start, const RopeParams& p) {
  const SeqDims d = rope(a, "qkv", qkv, p);
  a.ids("start", start);
  a.shape("start", start, {d.B});
  return d;
}

namespace {
CacheDims check_cache(const ArgCheck& a, const TensorView& k_cache, const TensorView& v_cache,
                      const TensorView& qkv, const TensorView& start, const AttentionParams& p) {
  check_heads(a, p.n_head, p.n_kv_head, p.head_dim);
  a.floats("qkv", qkv);
  const SeqDims d = check_qkv(a, "qkv", qkv, p.n_head, p.n_kv_head, p.head_dim);
  a.floats("k_cache", k_cache);
  a.rank("k_cache", k_cache, 4);
  const index_t S = k_cache.shape[2];
  a.shape("k_cache", k_cache, {d.B, p.n_kv_head, S, p.head_dim});
  a.floats("v_cache", v_cache);
  a.shape("v_cache", v_cache, k_cache.shape);
  a.ids("start", start);
  a.shape("start", start, {d.B});
  return {d.B, d.T, S};
}
}  // namespace

CacheDims kv_cache_write(const ArgCheck& a, const TensorView& k_cache, const TensorView& v_cache,
                         const TensorView& qkv, const TensorView& start, const AttentionParams& p) {
  return check_cache(a, k_cache, v_cache, qkv, start, p);
}

CacheDims attention_cached(const ArgCheck& a, const TensorView& out, const TensorView& qkv,
                           const TensorView& k_cache, const TensorView& v_cache, const TensorView& start,
                           const AttentionParams& p) {
  a.require(p.scale >= 0.0f && p.softcap >= 0.0f && p.window >= 0,
            "scale = {}, softcap = {}, window = {}: none may be negative (0 means the default / none)",
            p.scale, p.softcap, p.window);
  const CacheDims d = check_cache(a, k_cache, v_cache, qkv, start, p);
  a.floats("out", out);
  a.shape("out", out, {d.B, d.T, p.n_head * p.head_dim});
  return d;
}

void check_positions(const ArgCheck& a, const std::int32_t* start, index_t B, index_t T, index_t S) {
  for (index_t b = 0; b < B; ++b) {
    if (start[b] < 0 || start[b] + T > S)
      a.fail_as<DataError>("row {} starts at position {}: {} positions from there do not fit the cache of {}",
                           b, start[b], T, S);
  }
}

SeqDims attention_forward(const ArgCheck& a, const TensorView& out, const TensorView& att,
                          const TensorView& qkv, const AttentionParams& p) {
  return check_attention(a, qkv, out, "out", att, p);
}

SeqDims attention_backward(const ArgCheck& a, const TensorView& dqkv, const TensorView& datt,
                           const TensorView& dout, const TensorView& qkv, const TensorView& att,
                           const AttentionParams& p) {
  const SeqDims d = check_attention(a, qkv, dout, "dout", att, p);
  a.floats("dqkv", dqkv);
  a.shape("dqkv", dqkv, qkv.shape);
  a.floats("datt", datt);
  a.shape("datt", datt, att.shape);
  return d;
}

// ---- element-wise

index_t gelu_forward(const ArgCheck& a, const TensorView& out, const TensorView& inp) {
  return check_same(a, inp, {{"out", &out}});
}

index_t gelu_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& inp,
                      const TensorView& dout) {
  return check_same(a, inp, {{"dinp", &dinp}, {"dout", &dout}});
}

RowDims glu_forward(const ArgCheck& a, const TensorView& out, const TensorView& inp) {
  return check_glu(a, inp, out, "out");
}

RowDims glu_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& inp,
                     const TensorView& dout) {
  const RowDims d = check_glu(a, inp, dout, "dout");
  a.floats("dinp", dinp);
  a.shape("dinp", dinp, inp.shape);
  return d;
}

index_t residual_forward(const ArgCheck& a, const TensorView& out, const TensorView& a_in,
                         const TensorView& b_in) {
  return check_same(a, a_in, {{"out", &out}, {"b", &b_in}}, "a");
}

index_t residual_backward(const ArgCheck& a, const TensorView& da, const TensorView& db,
                          const TensorView& dout) {
  return check_same(a, dout, {{"da", &da}, {"db", &db}}, "dout");
}

index_t softcap_forward(const ArgCheck& a, const TensorView& out, const TensorView& inp, float cap) {
  const index_t n = check_same(a, inp, {{"out", &out}});
  a.require(cap > 0.0f, "cap = {} must be > 0", cap);
  return n;
}

index_t softcap_backward(const ArgCheck& a, const TensorView& dinp, const TensorView& out,
                         const TensorView& dout, float cap) {
  const index_t n = check_same(a, out, {{"dinp", &dinp}, {"dout", &dout}}, "out");
  a.require(cap > 0.0f, "cap = {} must be > 0", cap);
  return n;
}

// ---- losses

RowDims crossentropy_forward(const ArgCheck& a, const TensorView& losses, const TensorView& logits,
                             const TensorView& targets, const TensorView& mask) {
  const RowDims d = check_logits(a, logits, targets);
  a.floats("losses", losses);
  a.numel("losses", losses, d.N);
  if (a.optional_floats("mask", mask)) a.numel("mask", mask, d.N);
  return d;
}

RowDims crossentropy_backward(const ArgCheck& a, const TensorView& dlogits, const TensorView& logits,
                              const TensorView& targets, const TensorView& dlosses) {
  const RowDims d = check_logits(a, logits, targets);
  a.floats("dlogits", dlogits);
  a.shape("dlogits", dlogits, logits.shape);
  a.floats("dlosses", dlosses);
  a.numel("dlosses", dlosses, d.N);
  return d;
}

SeqDims per_sample_loss(const ArgCheck& a, const TensorView& sample_loss, const TensorView& tokens,
                        const TensorView& losses, const TensorView& mask) {
  a.floats("losses", losses);
  a.rank("losses", losses, 2);
  const index_t B = losses.shape[0], T = losses.shape[1];
  if (a.optional_floats("mask", mask)) a.shape("mask", mask, losses.shape);
  a.floats("sample_loss", sample_loss);
  a.numel("sample_loss", sample_loss, B);
  a.floats("tokens", tokens);
  a.numel("tokens", tokens, B);
  return {B, T};
}

// ---- optimizer and vector ops

index_t adamw_update(const ArgCheck& a, const TensorView& param, const TensorView& m, const TensorView& v,
                     const TensorView& grad, const AdamwParams& p) {
  const index_t n = check_same(a, grad, {{"param", &param}, {"m", &m}, {"v", &v}}, "grad");
  a.require(p.step >= 1, "step = {} must be >= 1 (bias correction divides by 1 - beta^step)", p.step);
  return n;
}

index_t sum_squares(const ArgCheck& a, const TensorView& x) {
  a.floats("x", x);
  return x.numel();
}

index_t dot(const ArgCheck& a, const TensorView& x, const TensorView& y) {
  return check_same(a, x, {{"y", &y}}, "x");
}

index_t scale(const ArgCheck& a, const TensorView& x) {
  a.floats("x", x);
  return x.numel();
}

index_t all_finite(const ArgCheck& a, const TensorView& x) {
  a.floats("x", x);
  return x.numel();
}

index_t axpby(const ArgCheck& a, const TensorView& y, const TensorView& x) {
  return check_same(a, x, {{"y", &y}}, "x");
}

index_t sign(const ArgCheck& a, const TensorView& out, const TensorView& x) {
  return check_same(a, x, {{"out", &out}}, "x");
}

// ---- bad ids

void fail_token_id(const ArgCheck& a, const TensorView& tokens, index_t i, std::int32_t id, index_t V) {
  const index_t T = tokens.shape.back();
  a.fail_as<DataError>(
      "token id {} at (b {}, t {}) is outside [0, {}); the data's vocabulary does not match the model's "
      "vocab_size",
      id, i / T, i % T, V);
}

void fail_target(const ArgCheck& a, index_t row, std::int32_t id, index_t V) {
  a.fail_as<DataError>(
      "target token {} at row {} is outside [0, {}); the data's vocabulary does not match the model's "
      "vocab_size",
      id, row, V);
}

}  // namespace flowlm::kernels::args
