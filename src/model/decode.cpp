#include "model/decode.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.hpp"
#include "core/random.hpp"

namespace flowlm::model {

namespace k = flowlm::kernels;
using k::TensorView;

// ---- sampling ---------------------------------------------------------------------------

std::uint64_t sampling_stream(std::uint64_t seed, std::uint64_t id) {
  std::uint64_t s = seed;
  const std::uint64_t a = splitmix64(s);
  std::uint64_t t = id ^ a;
  return splitmix64(t);
}

std::int32_t choose_token(const float* logits, index_t V, const Sampling& s, std::uint64_t& state) {
  if (s.temperature <= 0.0) return static_cast<std::int32_t>(std::max_element(logits, logits + V) - logits);
  // Candidates by logit, highest first (ties: lower id first), then the top-k and top-p cuts, as
  // transformers applies its temperature, top-k and top-p warpers in that order.
  std::vector<std::int32_t> ids(static_cast<std::size_t>(V));
  std::iota(ids.begin(), ids.end(), 0);
  std::stable_sort(ids.begin(), ids.end(),
                   [&](std::int32_t a, std::int32_t b) { return logits[a] > logits[b]; });
  std::size_t keep = ids.size();
  if (s.top_k > 0) keep = std::min(keep, static_cast<std::size_t>(s.top_k));
  std::vector<double> p(keep);
  const double top = static_cast<double>(logits[ids[0]]) / s.temperature;
  double sum = 0.0;
  for (std::size_t i = 0; i < keep; ++i) {
    p[i] = std::exp(static_cast<double>(logits[ids[i]]) / s.temperature - top);
    sum += p[i];
  }
  if (s.top_p < 1.0) {
    double cum = 0.0;
    std::size_t n = 0;
    while (n < keep) {
      cum += p[n] / sum;
      ++n;
      if (cum >= s.top_p) break;
    }
    keep = n;
    sum = 0.0;
    for (std::size_t i = 0; i < keep; ++i) sum += p[i];
  }
  const double u = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53 * sum;
  double cum = 0.0;
  for (std::size_t i = 0; i < keep; ++i) {
    cum += p[i];
    if (u < cum) return ids[i];
  }
  return ids[keep - 1];
}

// ---- the decoder ------------------------------------------------------------------------

namespace {
/// Most attention probabilities [B, NH, T, T] a prompt pass materialises (256 MiB of floats).
constexpr index_t kMaxPrefillProbabilities = index_t{1} << 26;
}  // namespace

/// Tensor indices of the model's table (as Transformer::index_layers finds them) and the buffers
/// of the cache and of one pass.
struct Decoder::Impl {
  struct Layer {
    index_t attn_norm_w = -1, attn_norm_b = -1, qkv_w = -1, qkv_b = -1, out_w = -1, out_b = -1,
            attn_post = -1, mlp_norm_w = -1, mlp_norm_b = -1, in_w = -1, in_b = -1, down_w = -1, down_b = -1,
            mlp_post = -1;
    k::Buffer k_cache, v_cache;
  };
  const Transformer& m;
  const ModelConfig& cfg;
  k::Backend& be;
  std::vector<Layer> layers;
  index_t tok_embed = -1, pos_embed = -1, final_w = -1, final_b = -1, head = -1;
  k::WeightLayout layout;
  index_t qkv_rows, in_cols;
  index_t rows = 0;  // rows the pass buffers hold
  k::Buffer x, h, mean, rstd, qkv, y, ao, aon, fc, act, mo, mon, last, lastn, lmean, lrstd, logits, tokens,
      start, att;

  explicit Impl(const Transformer& model)
      : m(model),
        cfg(model.config()),
        be(model.backend()),
        layout(cfg.arch == "gpt2" ? k::WeightLayout::conv1d : k::WeightLayout::linear),
        qkv_rows((cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim),
        in_cols(cfg.mlp == "gelu" ? cfg.n_ff : 2 * cfg.n_ff) {
    layers.resize(static_cast<std::size_t>(cfg.n_layer));
    const auto& table = m.param_table();
    for (std::size_t i = 0; i < table.size(); ++i) {
      const ParamSpec& p = table[i];
      const auto t = static_cast<index_t>(i);
      // The first weight (and bias) of a fused group stands for the group.
      auto first = [&](index_t& w, index_t& b) {
        index_t& slot = p.is_bias ? b : w;
        if (slot < 0) slot = t;
      };
      if (p.layer < 0) {
        if (p.role == Role::tok_embed) tok_embed = t;
        if (p.role == Role::pos_embed) pos_embed = t;
        if (p.role == Role::final_norm) (p.is_bias ? final_b : final_w) = t;
        if (p.role == Role::lm_head) head = t;
        continue;
      }
      Layer& L = layers[static_cast<std::size_t>(p.layer)];
      switch (p.role) {
        case Role::attn_norm:
          first(L.attn_norm_w, L.attn_norm_b);
          break;
        case Role::qkv:
          first(L.qkv_w, L.qkv_b);
          break;
        case Role::attn_out:
          first(L.out_w, L.out_b);
          break;
        case Role::attn_post:
          L.attn_post = t;
          break;
        case Role::mlp_norm:
          first(L.mlp_norm_w, L.mlp_norm_b);
          break;
        case Role::mlp_in:
          first(L.in_w, L.in_b);
          break;
        case Role::mlp_out:
          first(L.down_w, L.down_b);
          break;
        case Role::mlp_post:
          L.mlp_post = t;
          break;
        default:
          break;
      }
    }
    if (cfg.tie_embeddings) head = tok_embed;
  }

  TensorView param(index_t t, Shape shape) const {
    if (t < 0) return {};
    const auto& p = m.param_table()[static_cast<std::size_t>(t)];
    return TensorView{static_cast<float*>(m.params_view().data) + p.offset, k::DType::f32, std::move(shape),
                      be.device()};
  }
  TensorView param(index_t t) const {
    return t < 0 ? TensorView{} : param(t, m.param_table()[static_cast<std::size_t>(t)].shape);
  }
  static TensorView rows_of(const k::Buffer& b, index_t first, Shape shape) {
    index_t inner = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) inner *= shape[i];
    return TensorView{static_cast<float*>(b.data()) + first * inner, k::DType::f32, std::move(shape),
                      b.view().device};
  }
  static TensorView as(const k::Buffer& b, Shape shape) {
    return TensorView{b.data(), b.view().dtype, std::move(shape), b.view().device};
  }

  void ensure_rows(index_t n) {
    if (n <= rows) return;
    const index_t C = cfg.n_embd, HD = cfg.n_head * cfg.head_dim;
    auto f = [&](k::Buffer& b, index_t cols) { b = be.alloc(k::DType::f32, {n, cols}); };
    f(x, C);
    f(h, C);
    f(mean, 1);
    f(rstd, 1);
    f(qkv, qkv_rows);
    f(y, HD);
    f(ao, C);
    f(fc, in_cols);
    f(act, cfg.n_ff);
    f(mo, C);
    if (cfg.post_norms) {
      f(aon, C);
      f(mon, C);
    }
    tokens = be.alloc(k::DType::i32, {n});
    rows = n;
  }

  void norm(const TensorView& out, const TensorView& mu, const TensorView& rs, const TensorView& in,
            index_t w, index_t b) {
    if (cfg.norm == "layernorm")
      be.layernorm_forward(out, mu, rs, in, param(w), param(b), static_cast<float>(cfg.norm_eps));
    else
      be.rmsnorm_forward(out, rs, in, param(w),
                         k::RmsnormParams{static_cast<float>(cfg.norm_eps), cfg.norm == "rmsnorm_plus_one"});
  }

  k::AttentionParams attention_params(index_t l) const {
    k::AttentionParams p;
    p.n_head = cfg.n_head;
    p.n_kv_head = cfg.n_kv_head;
    p.head_dim = cfg.head_dim;
    p.scale = static_cast<float>(cfg.query_scale);
    p.softcap = static_cast<float>(cfg.attn_softcap);
    const bool windowed = cfg.sliding_window > 0 && (cfg.sliding_window_layers == "all" || l % 2 == 0);
    p.window = windowed ? cfg.sliding_window : 0;
    return p;
  }
};

Decoder::Decoder(const Transformer& model, index_t max_batch, index_t capacity)
    : max_batch_(max_batch), capacity_(capacity), impl_(std::make_unique<Impl>(model)) {
  const ModelConfig& c = model.config();
  if (max_batch < 1 || capacity < 1)
    fail<Error>("Decoder: max_batch = {} and capacity = {} must be >= 1", max_batch, capacity);
  if (c.pos == "learned" && capacity > c.block_size)
    fail<DataError>("decoding needs {} positions, more than the model's block_size {} (learned positions)",
                    capacity, c.block_size);
  for (auto& L : impl_->layers) {
    L.k_cache = model.backend().alloc(k::DType::f32, {max_batch, c.n_kv_head, capacity, c.head_dim});
    L.v_cache = model.backend().alloc(k::DType::f32, {max_batch, c.n_kv_head, capacity, c.head_dim});
  }
  impl_->last = model.backend().alloc(k::DType::f32, {max_batch, c.n_embd});
  impl_->lastn = model.backend().alloc(k::DType::f32, {max_batch, c.n_embd});
  impl_->lmean = model.backend().alloc(k::DType::f32, {max_batch});
  impl_->lrstd = model.backend().alloc(k::DType::f32, {max_batch});
  impl_->logits = model.backend().alloc(k::DType::f32, {max_batch, c.vocab_size});
  impl_->start = model.backend().alloc(k::DType::i32, {max_batch});
}

Decoder::~Decoder() = default;

// One pass over B rows of T tokens (row b at positions len_[b] .. len_[b] + T - 1), leaving the
// logits [B, V] of token last[b] of each row in logits_.
void Decoder::run(index_t B, index_t T, const std::vector<std::int32_t>& tokens,
                  const std::vector<index_t>& last) {
  Impl& I = *impl_;
  const ModelConfig& c = I.cfg;
  k::Backend& be = I.be;
  const index_t N = B * T, C = c.n_embd, V = c.vocab_size;
  for (index_t i = 0; i < N; ++i)
    if (tokens[static_cast<std::size_t>(i)] < 0 || tokens[static_cast<std::size_t>(i)] >= V)
      fail<DataError>("decode: token {} (row {}) is outside [0, {}); the tokenizer does not match the model",
                      tokens[static_cast<std::size_t>(i)], i / T, V);
  I.ensure_rows(N);
  be.copy_in(Impl::as(I.tokens, {N}), tokens.data(), static_cast<std::size_t>(N) * sizeof(std::int32_t));
  std::vector<std::int32_t> start(static_cast<std::size_t>(B));
  for (index_t b = 0; b < B; ++b)
    start[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(len_[static_cast<std::size_t>(b)]);
  const TensorView st = Impl::as(I.start, {B});
  be.copy_in(st, start.data(), start.size() * sizeof(std::int32_t));

  // Embeddings: learned positions read the rows of wpe from each row's start on.
  const TensorView x = Impl::as(I.x, {N, C});
  const TensorView tok = Impl::as(I.tokens, {B, T});
  const float scale = static_cast<float>(c.embed_scale);
  if (I.pos_embed < 0) {
    be.embedding_forward(Impl::as(I.x, {B, T, C}), tok, I.param(I.tok_embed), {}, scale);
  } else {
    const bool same = std::all_of(start.begin(), start.end(), [&](std::int32_t s) { return s == start[0]; });
    for (index_t b = 0; b < (same ? 1 : B); ++b) {
      const index_t rows = same ? B : 1, s = start[static_cast<std::size_t>(b)];
      const TensorView out{
          static_cast<float*>(I.x.data()) + b * T * C, k::DType::f32, {rows, T, C}, be.device()};
      const TensorView tb{
          static_cast<std::int32_t*>(I.tokens.data()) + b * T, k::DType::i32, {rows, T}, be.device()};
      const TensorView wpe{static_cast<float*>(I.param(I.pos_embed).data) + s * C,
                           k::DType::f32,
                           {c.block_size - s, C},
                           be.device()};
      be.embedding_forward(out, tb, I.param(I.tok_embed), wpe, scale);
    }
  }
  // A prompt pass from position 0 is ordinary causal attention: the backend's full attention (BLAS
  // blocks on the host) is faster than queries over the cache, while its probabilities fit in memory.
  const bool from_scratch = T > 1 &&
                            std::all_of(start.begin(), start.end(), [](std::int32_t s) { return s == 0; }) &&
                            B * c.n_head * T * T <= kMaxPrefillProbabilities;
  if (from_scratch && (!I.att || I.att.view().numel() < B * c.n_head * T * T))
    I.att = be.alloc(k::DType::f32, {B * c.n_head * T * T});
  const Shape qkv_w = I.layout == k::WeightLayout::conv1d ? Shape{C, I.qkv_rows} : Shape{I.qkv_rows, C};
  const Shape in_w = I.layout == k::WeightLayout::conv1d ? Shape{C, I.in_cols} : Shape{I.in_cols, C};
  const TensorView h = Impl::as(I.h, {N, C}), mu = Impl::as(I.mean, {N}), rs = Impl::as(I.rstd, {N});
  const TensorView qkv = Impl::as(I.qkv, {B, T, I.qkv_rows});
  const TensorView y = Impl::as(I.y, {B, T, c.n_head * c.head_dim});
  const TensorView ao = Impl::as(I.ao, {N, C}), fc = Impl::as(I.fc, {N, I.in_cols});
  const TensorView act = Impl::as(I.act, {N, c.n_ff}), mo = Impl::as(I.mo, {N, C});
  for (index_t l = 0; l < c.n_layer; ++l) {
    Impl::Layer& W = I.layers[static_cast<std::size_t>(l)];
    const k::AttentionParams ap = I.attention_params(l);
    const TensorView kc = Impl::as(W.k_cache, {B, c.n_kv_head, capacity_, c.head_dim});
    const TensorView vc = Impl::as(W.v_cache, {B, c.n_kv_head, capacity_, c.head_dim});
    // Attention: x += post(out(attn(rope(qkv(norm(x)))))) with keys and values from the cache.
    I.norm(h, mu, rs, x, W.attn_norm_w, W.attn_norm_b);
    be.matmul_forward(Impl::as(I.qkv, {N, I.qkv_rows}), h, I.param(W.qkv_w, qkv_w),
                      W.qkv_b >= 0 ? I.param(W.qkv_b, {I.qkv_rows}) : TensorView{}, I.layout);
    if (c.pos == "rope")
      be.rope_forward_at(qkv, st,
                         k::RopeParams{c.n_head, c.n_kv_head, c.head_dim, static_cast<float>(c.rope_theta)});
    be.kv_cache_write(kc, vc, qkv, st, ap);
    if (from_scratch)
      be.attention_forward(y, Impl::as(I.att, {B, c.n_head, T, T}), qkv, ap);
    else
      be.attention_cached(y, qkv, kc, vc, st, ap);
    be.matmul_forward(ao, Impl::as(I.y, {N, c.n_head * c.head_dim}), I.param(W.out_w),
                      W.out_b >= 0 ? I.param(W.out_b) : TensorView{}, I.layout);
    TensorView attn_out = ao;
    if (c.post_norms) {
      attn_out = Impl::as(I.aon, {N, C});
      I.norm(attn_out, {}, rs, ao, W.attn_post, -1);
    }
    be.residual_forward(x, x, attn_out);
    // MLP: x += post(down(act(in(norm(x))))).
    I.norm(h, mu, rs, x, W.mlp_norm_w, W.mlp_norm_b);
    be.matmul_forward(fc, h, I.param(W.in_w, in_w), W.in_b >= 0 ? I.param(W.in_b) : TensorView{}, I.layout);
    if (c.mlp == "gelu")
      be.gelu_forward(act, fc);
    else
      be.glu_forward(act, fc, c.mlp == "swiglu" ? k::GluKind::swiglu : k::GluKind::geglu);
    be.matmul_forward(mo, act, I.param(W.down_w), W.down_b >= 0 ? I.param(W.down_b) : TensorView{}, I.layout);
    TensorView mlp_out = mo;
    if (c.post_norms) {
      mlp_out = Impl::as(I.mon, {N, C});
      I.norm(mlp_out, {}, rs, mo, W.mlp_post, -1);
    }
    be.residual_forward(x, x, mlp_out);
  }
  // The final norm and the head on the rows whose next token is wanted only.
  TensorView hl = Impl::as(I.last, {B, C});
  if (T == 1) {
    hl = x;
  } else {
    for (index_t b = 0; b < B; ++b) {
      const index_t r = b * T + last[static_cast<std::size_t>(b)];
      be.axpby(Impl::rows_of(I.last, b, {1, C}), Impl::rows_of(I.x, r, {1, C}), 1.0f, 0.0f);
    }
  }
  const TensorView hn = Impl::as(I.lastn, {B, C});
  I.norm(hn, Impl::as(I.lmean, {B}), Impl::as(I.lrstd, {B}), hl, I.final_w, I.final_b);
  const TensorView logits = Impl::as(I.logits, {B, V});
  be.matmul_forward(logits, hn, I.param(I.head), {}, k::WeightLayout::linear);
  if (c.final_softcap > 0) be.softcap_forward(logits, logits, static_cast<float>(c.final_softcap));
  logits_.resize(static_cast<std::size_t>(B * V));
  be.copy_out(logits_.data(), logits_.size() * sizeof(float), logits);
}

const std::vector<float>& Decoder::prefill(const std::vector<std::vector<std::int32_t>>& prompts) {
  const auto B = static_cast<index_t>(prompts.size());
  if (B < 1 || B > max_batch_) fail<Error>("Decoder::prefill: {} prompts for a batch of {}", B, max_batch_);
  index_t T = 0;
  for (const auto& p : prompts) {
    if (p.empty()) fail<DataError>("decode: an empty prompt (give at least one token, e.g. the BOS or EOT)");
    T = std::max(T, static_cast<index_t>(p.size()));
  }
  if (T > capacity_)
    fail<DataError>("decode: a prompt of {} tokens does not fit the cache of {} positions", T, capacity_);
  len_.assign(static_cast<std::size_t>(B), 0);
  // Right padding: a row's padded positions write cache slots that its later tokens overwrite before
  // any query of that row can see them.
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(B * T), prompts[0][0]);
  std::vector<index_t> last(static_cast<std::size_t>(B));
  for (index_t b = 0; b < B; ++b) {
    const auto& p = prompts[static_cast<std::size_t>(b)];
    std::copy(p.begin(), p.end(), tokens.begin() + b * T);
    last[static_cast<std::size_t>(b)] = static_cast<index_t>(p.size()) - 1;
  }
  run(B, T, tokens, last);
  for (index_t b = 0; b < B; ++b)
    len_[static_cast<std::size_t>(b)] = static_cast<index_t>(prompts[static_cast<std::size_t>(b)].size());
  return logits_;
}

const std::vector<float>& Decoder::step(const std::vector<std::int32_t>& tokens,
                                        const std::vector<char>& active) {
  const auto B = static_cast<index_t>(len_.size());
  if (static_cast<index_t>(tokens.size()) != B)
    fail<Error>("Decoder::step: {} tokens for {} sequences", tokens.size(), B);
  // Inactive rows rewrite their last slot (their length stays), so they never run out of cache.
  std::vector<index_t> saved = len_;
  for (index_t b = 0; b < B; ++b) {
    const bool on = active.empty() || active[static_cast<std::size_t>(b)];
    index_t& L = len_[static_cast<std::size_t>(b)];
    if (on && L >= capacity_) fail<DataError>("decode: sequence {} is full ({} positions)", b, capacity_);
    if (!on) L = std::max<index_t>(0, std::min(L, capacity_) - 1);
  }
  run(B, 1, tokens, std::vector<index_t>(static_cast<std::size_t>(B), 0));
  for (index_t b = 0; b < B; ++b) {
    const bool on = active.empty() || active[static_cast<std::size_t>(b)];
    len_[static_cast<std::size_t>(b)] =
        on ? saved[static_cast<std::size_t>(b)] + 1 : saved[static_cast<std::size_t>(b)];
  }
  return logits_;
}

// ---- generation -------------------------------------------------------------------------

namespace {

struct Rows {
  std::vector<std::vector<std::int32_t>> out;
  std::vector<char> done;
  std::vector<std::uint64_t> state;
};

// Takes each active row's next token from its logits; returns the tokens to feed.
std::vector<std::int32_t> advance(Rows& r, const float* logits, index_t V, std::size_t first,
                                  const GenerateOptions& opt) {
  const std::size_t B = r.done.size();
  std::vector<std::int32_t> feed(B, 0);
  for (std::size_t b = 0; b < B; ++b) {
    if (r.done[b]) continue;
    const std::int32_t next = choose_token(logits + static_cast<index_t>(b) * V, V, opt.sampling, r.state[b]);
    feed[b] = next;
    if (opt.eot && next == *opt.eot) {
      r.done[b] = 1;
      continue;
    }
    r.out[b].push_back(next);
    if (static_cast<index_t>(r.out[b].size()) >= opt.max_new_tokens ||
        (opt.stop && opt.stop(first + b, r.out[b])))
      r.done[b] = 1;
  }
  return feed;
}

Rows start_rows(std::size_t first, std::size_t B, const GenerateOptions& opt) {
  Rows r;
  r.out.assign(B, {});
  r.done.assign(B, opt.max_new_tokens <= 0 ? 1 : 0);
  for (std::size_t b = 0; b < B; ++b) {
    const std::uint64_t id = opt.streams.empty() ? first + b : opt.streams[first + b];
    r.state.push_back(sampling_stream(opt.sampling.seed, id));
  }
  return r;
}

bool all_done(const Rows& r) {
  return std::all_of(r.done.begin(), r.done.end(), [](char d) { return d != 0; });
}

}  // namespace

std::vector<std::vector<std::int32_t>> generate(const Transformer& model,
                                                const std::vector<std::vector<std::int32_t>>& prompts,
                                                const GenerateOptions& opt, index_t batch) {
  if (!opt.streams.empty() && opt.streams.size() != prompts.size())
    fail<Error>("generate: {} stream ids for {} prompts", opt.streams.size(), prompts.size());
  std::vector<std::vector<std::int32_t>> result;
  const index_t V = model.config().vocab_size;
  for (std::size_t first = 0; first < prompts.size(); first += static_cast<std::size_t>(batch)) {
    const std::size_t B = std::min(prompts.size() - first, static_cast<std::size_t>(batch));
    const std::vector<std::vector<std::int32_t>> chunk(
        prompts.begin() + static_cast<std::ptrdiff_t>(first),
        prompts.begin() + static_cast<std::ptrdiff_t>(first + B));
    index_t longest = 0;
    for (const auto& p : chunk) longest = std::max(longest, static_cast<index_t>(p.size()));
    // The last generated token is never fed back: it needs no cache slot.
    const index_t capacity = longest + std::max<index_t>(opt.max_new_tokens - 1, 0);
    Rows r = start_rows(first, B, opt);
    if (!all_done(r)) {
      Decoder dec(model, static_cast<index_t>(B), capacity);
      std::vector<std::int32_t> feed = advance(r, dec.prefill(chunk).data(), V, first, opt);
      while (!all_done(r)) {
        std::vector<char> active(B);
        for (std::size_t b = 0; b < B; ++b) active[b] = r.done[b] ? 0 : 1;
        feed = advance(r, dec.step(feed, active).data(), V, first, opt);
      }
    }
    for (auto& o : r.out) result.push_back(std::move(o));
  }
  return result;
}

std::vector<std::vector<std::int32_t>> generate_uncached(
    Transformer& model, const std::vector<std::vector<std::int32_t>>& prompts, const GenerateOptions& opt) {
  const index_t V = model.config().vocab_size;
  std::vector<std::vector<std::int32_t>> result;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) fail<DataError>("decode: an empty prompt (give at least one token)");
    Rows r = start_rows(i, 1, opt);
    std::vector<std::int32_t> seq = prompts[i];
    while (!all_done(r)) {
      const auto T = static_cast<index_t>(seq.size());
      if (model.config().pos == "learned" && T > model.config().block_size)
        fail<DataError>(
            "decoding needs {} positions, more than the model's block_size {} (learned positions)", T,
            model.config().block_size);
      model.forward(seq.data(), nullptr, nullptr, 1, T, /*training=*/false);
      std::vector<float> row(static_cast<std::size_t>(V));
      const float* logits = model.logits() + (T - 1) * V;
      std::copy(logits, logits + V, row.begin());
      const std::vector<std::int32_t> feed = advance(r, row.data(), V, i, opt);
      seq.push_back(feed[0]);
    }
    result.push_back(std::move(r.out[0]));
  }
  return result;
}

}  // namespace flowlm::model
