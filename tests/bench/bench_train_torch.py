#!/usr/bin/python3
"""PyTorch CPU peer for flowlm's training benchmark (tests/bench/bench_train.cpp): the same model
(GPT-2, or Llama with --arch llama), the same step (forward, backward, gradient-norm clipping,
AdamW lr 3e-4, betas 0.9/0.95, weight decay 0.1), the same batch shape, on the same machine.

  /usr/bin/python3 tests/bench/bench_train_torch.py [--arch gpt2|llama] [--n-layer 6 --n-head 6
      --n-embd 384 --vocab 256 --seq 256 --batch 8] [--n-kv-head K --n-ff F] [--steps 10
      --warmup 2 --threads 2]

Llama is the math of tests/model/torch_reference.py (which matches flowlm's forward): RMSNorm
eps 1e-5, rotate-half RoPE theta 1e4 on q and k, grouped-query attention (kv head h // (H/K)),
SwiGLU MLP, untied head, nn.Linear without biases, Hugging Face's separate q/k/v and gate/up
projections. --n-kv-head and --n-ff default as in bench_train (0: llama n_head / 3 lowered to a
divisor, Meta's 8/3 C up to a multiple of 256; gpt2 keeps n_head and 4C).

Prints one JSON line: impl, version, arch, threads, vocab, n_kv_head, n_ff, params (counted from
the model), params_formula (flowlm's tensor table, model/tensors.cpp), tokens_per_s (median step),
step_ms, peak_rss_mb, final_loss. Exits 1 (before timing) when params != params_formula."""
import argparse
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, nh):
        super().__init__()
        self.nh = nh
        self.ln_1 = nn.LayerNorm(c)
        self.c_attn = nn.Linear(c, 3 * c)
        self.attn_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c)
        self.c_fc = nn.Linear(c, 4 * c)
        self.mlp_proj = nn.Linear(4 * c, c)

    def attention(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.nh, c // self.nh).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(c // self.nh)
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return self.attn_proj((att @ v).transpose(1, 2).reshape(b, t, c))

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, n_layer, n_head, n_embd, vocab, block):
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        # GPT-2 init, as flowlm does: N(0, 0.02), residual projections scaled by 1/sqrt(2L).
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets):
        t = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(t))
        for blk in self.h:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied head
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaBlock(nn.Module):
    def __init__(self, c, nh, nkv, n_ff, eps):
        super().__init__()
        self.nh, self.nkv, self.hd, self.eps = nh, nkv, c // nh, eps
        self.input_layernorm = nn.Parameter(torch.ones(c))
        self.q_proj = nn.Linear(c, nh * self.hd, bias=False)
        self.k_proj = nn.Linear(c, nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(c, nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(nh * self.hd, c, bias=False)
        self.post_attention_layernorm = nn.Parameter(torch.ones(c))  # Llama's pre-MLP norm
        self.gate_proj = nn.Linear(c, n_ff, bias=False)
        self.up_proj = nn.Linear(c, n_ff, bias=False)
        self.down_proj = nn.Linear(n_ff, c, bias=False)

    def attention(self, x, cos, sin, mask):
        b, t, _ = x.shape
        nh, nkv, hd = self.nh, self.nkv, self.hd
        q = self.q_proj(x).view(b, t, nh, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, nkv, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, nkv, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # GQA as Hugging Face's repeat_kv: query head h reads kv head h // (nh / nkv).
        k = k[:, :, None].expand(b, nkv, nh // nkv, t, hd).reshape(b, nh, t, hd)
        v = v[:, :, None].expand(b, nkv, nh // nkv, t, hd).reshape(b, nh, t, hd)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return self.o_proj((att @ v).transpose(1, 2).reshape(b, t, nh * hd))

    def forward(self, x, cos, sin, mask):
        x = x + self.attention(rms_norm(x, self.input_layernorm, self.eps), cos, sin, mask)
        h = rms_norm(x, self.post_attention_layernorm, self.eps)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, n_layer, n_head, n_kv_head, n_embd, n_ff, vocab, block, eps=1e-5, theta=10000.0):
        super().__init__()
        self.eps = eps
        self.embed_tokens = nn.Embedding(vocab, n_embd)
        self.layers = nn.ModuleList(LlamaBlock(n_embd, n_head, n_kv_head, n_ff, eps) for _ in range(n_layer))
        self.norm = nn.Parameter(torch.ones(n_embd))
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)  # untied
        # Rotate-half RoPE: dimension i pairs with i + d/2, both at angle pos * theta^(-2i/d).
        hd = n_embd // n_head
        inv_freq = theta ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        angle = torch.arange(block, dtype=torch.float64)[:, None] * inv_freq[None, :]
        angle = torch.cat((angle, angle), dim=-1)
        self.register_buffer("cos", angle.cos().float(), persistent=False)
        self.register_buffer("sin", angle.sin().float(), persistent=False)
        # flowlm's init: N(0, 0.02), output projections N(0, 0.02 / sqrt(2L)), norm weights 1.
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                scaled = name.endswith("o_proj.weight") or name.endswith("down_proj.weight")
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer) if scaled else 0.02)

    def forward(self, idx, targets):
        t = idx.shape[1]
        cos, sin = self.cos[:t], self.sin[:t]
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        x = self.embed_tokens(idx)
        for blk in self.layers:
            x = blk(x, cos, sin, mask)
        logits = self.lm_head(rms_norm(x, self.norm, self.eps))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def default_kv_heads(arch, n_head):
    """bench_train's default: n_head for gpt2; for llama n_head / 3 rounded, lowered to a divisor."""
    if arch != "llama":
        return n_head
    k = max(1, (n_head + 1) // 3)
    while n_head % k:
        k -= 1
    return k


def default_n_ff(arch, n_embd):
    """resolve_model's family default: llama 8/3 C up to a multiple of 256, else 4C."""
    if arch != "llama":
        return 4 * n_embd
    return (2 * 4 * n_embd // 3 + 255) // 256 * 256


def flowlm_param_count(arch, n_layer, n_head, n_kv_head, n_embd, n_ff, vocab, block):
    """The parameter count of flowlm's tensor table (src/model/tensors.cpp) for these families."""
    C, H, K, d, F_, V, L = n_embd, n_head, n_kv_head, n_embd // n_head, n_ff, vocab, n_layer
    if arch == "gpt2":  # biases everywhere, LayerNorm w+b, learned positions, tied head
        per_layer = 2 * C + (C + 1) * (H + 2 * K) * d + (H * d + 1) * C + 2 * C + (C + 1) * F_ + (F_ + 1) * C
        return V * C + block * C + L * per_layer + 2 * C
    # llama: RMSNorm weights only, no biases, RoPE, gated MLP, untied head
    per_layer = C + (H + 2 * K) * d * C + C * H * d + C + 2 * F_ * C + C * F_
    return V * C + L * per_layer + C + V * C


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--arch", choices=("gpt2", "llama"), default="gpt2")
    ap.add_argument("--n-layer", type=int, default=6)
    ap.add_argument("--n-head", type=int, default=6)
    ap.add_argument("--n-embd", type=int, default=384)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--n-kv-head", type=int, default=0, help="0 = bench_train's default (llama only)")
    ap.add_argument("--n-ff", type=int, default=0, help="0 = the family default (llama only)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    n_kv_head = a.n_kv_head or default_kv_heads(a.arch, a.n_head)
    n_ff = a.n_ff or default_n_ff(a.arch, a.n_embd)
    if a.arch == "llama":
        model = Llama(a.n_layer, a.n_head, n_kv_head, a.n_embd, n_ff, a.vocab, a.seq)
    else:
        if (n_kv_head, n_ff) != (a.n_head, 4 * a.n_embd):
            ap.error("--n-kv-head and --n-ff are for --arch llama (this GPT-2 has n_head and 4 n_embd)")
        model = GPT(a.n_layer, a.n_head, a.n_embd, a.vocab, a.seq)
    params = sum(p.numel() for p in model.parameters())
    formula = flowlm_param_count(a.arch, a.n_layer, a.n_head, n_kv_head, a.n_embd, n_ff, a.vocab, a.seq)
    if params != formula:  # not the model flowlm builds: fail before timing anything
        print("bench_train_torch.py: the PyTorch {} has {} parameters, flowlm's formula {}".format(
            a.arch, params, formula), file=sys.stderr)
        sys.exit(1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    x = torch.randint(0, a.vocab, (a.batch, a.seq))
    y = torch.randint(0, a.vocab, (a.batch, a.seq))
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    step = sorted(times)[len(times) // 2]
    print(json.dumps({
        "impl": "pytorch", "version": torch.__version__, "arch": a.arch, "threads": a.threads,
        "vocab": a.vocab, "n_kv_head": n_kv_head, "n_ff": n_ff, "params": params, "params_formula": formula,
        "tokens_per_s": a.batch * a.seq / step, "step_ms": step * 1e3,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "final_loss": float(loss),
    }))


if __name__ == "__main__":
    main()
