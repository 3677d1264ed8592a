"""Plain-PyTorch reference forward pass for flowlm's model families (GPT-2, Llama, Gemma-2).

Written from the math (following Hugging Face semantics), not from flowlm or `transformers`, so the
C++ tests can check flowlm's logits and losses against an independent implementation. Everything is
computed in float64 so the reference's own rounding is negligible next to flowlm's float32.

File format: every dataset under the HDF5 group /model is a tensor named by its Hugging Face name, and
the model config is stored as attributes of /model (see REQUIRED_ATTRS). `compare` files also hold
/test/tokens, /test/targets, /test/logits and /test/losses (flowlm's outputs).

Usage: python3 tests/model/torch_reference.py compare FILE.h5 [--rtol R] [--atol A]
Exit status: 0 match, 1 mismatch, 2 bad input (missing dataset/attribute, unknown arch, ...).
"""

import argparse
import math
import sys

import h5py
import numpy as np
import torch

INT_ATTRS = ("n_layer", "n_head", "n_kv_head", "head_dim", "n_embd", "n_ff", "vocab_size", "block_size",
             "sliding_window", "tie_embeddings", "post_norms")
FLOAT_ATTRS = ("norm_eps", "rope_theta", "embed_scale", "attn_softcap", "final_softcap", "query_scale")
STR_ATTRS = ("arch", "norm", "pos", "mlp", "biases", "sliding_window_layers")
REQUIRED_ATTRS = INT_ATTRS + FLOAT_ATTRS + STR_ATTRS

CHOICES = {
    "arch": ("gpt2", "llama", "gemma2"),
    "norm": ("layernorm", "rmsnorm", "rmsnorm_plus_one"),
    "pos": ("learned", "rope"),
    "mlp": ("gelu", "swiglu", "geglu"),
    "biases": ("all", "none", "qkv"),
    "sliding_window_layers": ("all", "alternate"),
}


class FormatError(Exception):
    """The file or config does not describe a model this reference can run (CLI exit status 2)."""


# ----------------------------------------------------------------------------------------------
# Loading


def _scalar(value):
    # h5py hands back numpy scalars, 1-element arrays, bytes or str depending on how the writer
    # stored the attribute (fixed/variable length strings, C++ vs Python writers).
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError("expected a scalar, got an array of shape {}".format(value.shape))
        value = value.reshape(()).item() if value.dtype.kind not in "SUO" else value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8")
    if isinstance(value, np.generic):
        value = value.item()
    return value


def normalize_config(raw, where="config"):
    """Typed copy of the config keys (ints, floats, strs); raises FormatError naming the key."""
    cfg = {}
    for key in REQUIRED_ATTRS:
        if key not in raw:
            raise FormatError("{}: missing attribute '{}'".format(where, key))
        try:
            value = _scalar(raw[key])
            if key in STR_ATTRS:
                if not isinstance(value, str):
                    raise ValueError("not a string: {!r}".format(value))
                value = value.strip()
            elif key in INT_ATTRS:
                if isinstance(value, str) or float(value) != int(value):
                    raise ValueError("not an integer: {!r}".format(value))
                value = int(value)
            else:
                if isinstance(value, str):
                    raise ValueError("not a number: {!r}".format(value))
                value = float(value)
        except (TypeError, ValueError) as e:
            raise FormatError("{}: attribute '{}': {}".format(where, key, e)) from None
        cfg[key] = value
    for key, allowed in CHOICES.items():
        if cfg[key] not in allowed:
            label = "unknown arch" if key == "arch" else "attribute '{}' has unknown value".format(key)
            raise FormatError("{}: {} '{}' (expected one of {})".format(where, label, cfg[key], ", ".join(allowed)))
    return cfg


def load(path):
    """(cfg, weights) from a flowlm HDF5 file: /model's attributes and every dataset under /model."""
    path = str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise FormatError("{}: cannot open as HDF5: {}".format(path, e)) from None
    with f:
        if "model" not in f or not isinstance(f["model"], h5py.Group):
            raise FormatError("{}: no group '/model'".format(path))
        group = f["model"]
        cfg = normalize_config(dict(group.attrs), where="{} (/model attributes)".format(path))
        weights = {}

        def visit(name, obj):
            # Names are flat HF names; a nested layout (groups per dot) maps back to the same names.
            if isinstance(obj, h5py.Dataset):
                weights[name.replace("/", ".")] = torch.from_numpy(np.array(obj[()]))

        group.visititems(visit)
    return cfg, weights


# ----------------------------------------------------------------------------------------------
# Forward


class _Params:
    """Fetches tensors by HF name as float64, checking shapes, and maps each family's names and
    layouts to one canonical form: linear layers as (W [in, out], b or None) with y = x @ W + b."""

    def __init__(self, cfg, weights):
        self.cfg = cfg
        self.weights = weights
        self.gpt2_names = cfg["arch"] == "gpt2"

    def get(self, name, shape):
        if name not in self.weights:
            raise FormatError("missing dataset '/model/{}'".format(name))
        t = torch.as_tensor(self.weights[name]).to(torch.float64)
        if tuple(t.shape) != tuple(shape):
            raise FormatError("dataset '/model/{}' has shape {}, expected {}".format(
                name, list(t.shape), list(shape)))
        return t

    def linear_hf(self, prefix, n_out, n_in, bias):
        # nn.Linear layout: weight [out, in], y = x @ W^T + b.
        w = self.get(prefix + ".weight", (n_out, n_in)).t()
        b = self.get(prefix + ".bias", (n_out,)) if bias else None
        return w, b

    def linear_conv1d(self, prefix, n_in, n_out, bias):
        # GPT-2 Conv1D layout: weight [in, out], y = x @ W + b.
        w = self.get(prefix + ".weight", (n_in, n_out))
        b = self.get(prefix + ".bias", (n_out,)) if bias else None
        return w, b

    def norm(self, prefix):
        c = self.cfg
        n_embd = c["n_embd"]
        w = self.get(prefix + ".weight", (n_embd,))
        # Only LayerNorm carries a bias, and only in models whose layers all have biases (GPT-2).
        b = self.get(prefix + ".bias", (n_embd,)) if c["norm"] == "layernorm" and c["biases"] == "all" else None
        return w, b

    def embeddings(self):
        c = self.cfg
        name = "transformer.wte.weight" if self.gpt2_names else "model.embed_tokens.weight"
        return self.get(name, (c["vocab_size"], c["n_embd"]))

    def pos_embeddings(self):
        c = self.cfg
        if not self.gpt2_names:
            raise FormatError("pos 'learned' needs GPT-2 tensor names (transformer.wpe.weight), arch is '{}'".format(
                c["arch"]))
        return self.get("transformer.wpe.weight", (c["block_size"], c["n_embd"]))

    def final_norm(self):
        return self.norm("transformer.ln_f" if self.gpt2_names else "model.norm")

    def head(self):
        c = self.cfg
        if c["tie_embeddings"]:
            return self.embeddings()
        return self.get("lm_head.weight", (c["vocab_size"], c["n_embd"]))

    def layer(self, l):
        c = self.cfg
        C, H, K, d, F = c["n_embd"], c["n_head"], c["n_kv_head"], c["head_dim"], c["n_ff"]
        qkv_bias = c["biases"] in ("all", "qkv")
        all_bias = c["biases"] == "all"
        p = {}
        if self.gpt2_names:
            pre = "transformer.h.{}.".format(l)
            p["attn_norm"] = self.norm(pre + "ln_1")
            w, b = self.linear_conv1d(pre + "attn.c_attn", C, (H + 2 * K) * d, qkv_bias)
            cuts = [0, H * d, (H + K) * d, (H + 2 * K) * d]
            for i, key in enumerate(("q", "k", "v")):
                p[key] = (w[:, cuts[i]:cuts[i + 1]], None if b is None else b[cuts[i]:cuts[i + 1]])
            p["o"] = self.linear_conv1d(pre + "attn.c_proj", H * d, C, all_bias)
            p["mlp_norm"] = self.norm(pre + "ln_2")
            if c["mlp"] != "gelu":
                raise FormatError("mlp '{}' has no GPT-2 tensor names (arch gpt2 supports mlp 'gelu')".format(c["mlp"]))
            p["up"] = self.linear_conv1d(pre + "mlp.c_fc", C, F, all_bias)
            p["down"] = self.linear_conv1d(pre + "mlp.c_proj", F, C, all_bias)
            if c["post_norms"]:
                raise FormatError("post_norms needs Llama/Gemma-2 tensor names, arch is 'gpt2'")
        else:
            pre = "model.layers.{}.".format(l)
            p["attn_norm"] = self.norm(pre + "input_layernorm")
            p["q"] = self.linear_hf(pre + "self_attn.q_proj", H * d, C, qkv_bias)
            p["k"] = self.linear_hf(pre + "self_attn.k_proj", K * d, C, qkv_bias)
            p["v"] = self.linear_hf(pre + "self_attn.v_proj", K * d, C, qkv_bias)
            p["o"] = self.linear_hf(pre + "self_attn.o_proj", C, H * d, all_bias)
            # Llama's pre-MLP norm is called post_attention_layernorm; Gemma-2 reuses that name for
            # the norm on the attention output and calls its pre-MLP norm pre_feedforward_layernorm.
            if c["arch"] == "gemma2" or c["post_norms"]:
                p["mlp_norm"] = self.norm(pre + "pre_feedforward_layernorm")
            else:
                p["mlp_norm"] = self.norm(pre + "post_attention_layernorm")
            if c["post_norms"]:
                p["post_attn_norm"] = self.norm(pre + "post_attention_layernorm")
                p["post_mlp_norm"] = self.norm(pre + "post_feedforward_layernorm")
            if c["mlp"] != "gelu":
                p["gate"] = self.linear_hf(pre + "mlp.gate_proj", F, C, all_bias)
            p["up"] = self.linear_hf(pre + "mlp.up_proj", F, C, all_bias)
            p["down"] = self.linear_hf(pre + "mlp.down_proj", C, F, all_bias)
        return p


def _apply_linear(x, wb):
    w, b = wb
    y = x @ w
    return y if b is None else y + b


def _gelu_tanh(x):
    # GPT-2's gelu_new / Gemma-2's gelu_pytorch_tanh.
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _norm(cfg, x, wb):
    w, b = wb
    eps = cfg["norm_eps"]
    if cfg["norm"] == "layernorm":
        mu = x.mean(-1, keepdim=True)
        var = (x - mu).pow(2).mean(-1, keepdim=True)  # biased variance, as nn.LayerNorm
        y = (x - mu) * torch.rsqrt(var + eps) * w
        return y if b is None else y + b
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * (1.0 + w) if cfg["norm"] == "rmsnorm_plus_one" else y * w


def _rope(x, theta):
    # HF rotate-half convention: dimension i pairs with i + d/2 and both rotate by pos * inv_freq[i].
    T, d = x.shape[-2], x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angle = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angle = torch.cat([angle, angle], dim=-1)
    half = d // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * torch.cos(angle) + rotated * torch.sin(angle)


def _attention_mask(T, window):
    """[T, T] bool, True where query i may attend to key j: j <= i and, with a window, i - j < window."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= i
    if window > 0:
        allowed = allowed & (i - j < window)
    return allowed


def layer_uses_window(cfg, l):
    if cfg["sliding_window"] <= 0:
        return False
    return cfg["sliding_window_layers"] == "all" or l % 2 == 0


def _attention(cfg, x, p, l):
    B, T, _ = x.shape
    H, K, d = cfg["n_head"], cfg["n_kv_head"], cfg["head_dim"]
    q = _apply_linear(x, p["q"]).view(B, T, H, d).transpose(1, 2)  # [B, H, T, d]
    k = _apply_linear(x, p["k"]).view(B, T, K, d).transpose(1, 2)  # [B, K, T, d]
    v = _apply_linear(x, p["v"]).view(B, T, K, d).transpose(1, 2)
    if cfg["pos"] == "rope":
        q = _rope(q, cfg["rope_theta"])
        k = _rope(k, cfg["rope_theta"])
    # GQA: query head h reads kv head h // (H / K), i.e. each kv head serves H/K consecutive heads.
    k = k.repeat_interleave(H // K, dim=1)
    v = v.repeat_interleave(H // K, dim=1)
    s = (q @ k.transpose(-1, -2)) * cfg["query_scale"]
    cap = cfg["attn_softcap"]
    if cap > 0:
        s = cap * torch.tanh(s / cap)  # Gemma-2 caps the scores before the mask is added
    window = cfg["sliding_window"] if layer_uses_window(cfg, l) else 0
    s = s.masked_fill(~_attention_mask(T, window), float("-inf"))
    y = torch.softmax(s, dim=-1) @ v  # [B, H, T, d]
    return _apply_linear(y.transpose(1, 2).reshape(B, T, H * d), p["o"])


def _mlp(cfg, x, p):
    if cfg["mlp"] == "gelu":
        return _apply_linear(_gelu_tanh(_apply_linear(x, p["up"])), p["down"])
    gate = _apply_linear(x, p["gate"])
    act = torch.nn.functional.silu(gate) if cfg["mlp"] == "swiglu" else _gelu_tanh(gate)
    return _apply_linear(act * _apply_linear(x, p["up"]), p["down"])


def check_config(cfg):
    """Normalised copy of cfg with the cross-key constraints checked (FormatError otherwise)."""
    cfg = normalize_config(cfg)
    H, K, d = cfg["n_head"], cfg["n_kv_head"], cfg["head_dim"]
    for key in ("n_layer", "n_head", "n_kv_head", "head_dim", "n_embd", "n_ff", "vocab_size", "block_size"):
        if cfg[key] <= 0:
            raise FormatError("attribute '{}' must be positive, got {}".format(key, cfg[key]))
    if H % K != 0:
        raise FormatError("attribute 'n_head' ({}) is not a multiple of 'n_kv_head' ({})".format(H, K))
    if cfg["pos"] == "rope" and d % 2 != 0:
        raise FormatError("attribute 'head_dim' ({}) must be even for rope".format(d))
    return cfg


def forward(cfg, weights, tokens):
    """Logits [B, T, V] (float64) of the model (cfg, weights) on tokens [B, T]."""
    cfg = check_config(cfg)
    tokens = torch.as_tensor(tokens).long()
    if tokens.dim() != 2:
        raise FormatError("tokens must be [B, T], got shape {}".format(list(tokens.shape)))
    B, T = tokens.shape
    V = cfg["vocab_size"]
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= V):
        raise FormatError("tokens outside [0, {}): min {} max {}".format(V, int(tokens.min()), int(tokens.max())))
    params = _Params(cfg, weights)

    x = params.embeddings()[tokens] * cfg["embed_scale"]
    if cfg["pos"] == "learned":
        if T > cfg["block_size"]:
            raise FormatError("sequence length {} exceeds block_size {}".format(T, cfg["block_size"]))
        x = x + params.pos_embeddings()[:T][None]
    for l in range(cfg["n_layer"]):
        p = params.layer(l)
        a = _attention(cfg, _norm(cfg, x, p["attn_norm"]), p, l)
        if "post_attn_norm" in p:
            a = _norm(cfg, a, p["post_attn_norm"])
        x = x + a
        m = _mlp(cfg, _norm(cfg, x, p["mlp_norm"]), p)
        if "post_mlp_norm" in p:
            m = _norm(cfg, m, p["post_mlp_norm"])
        x = x + m
    logits = _norm(cfg, x, params.final_norm()) @ params.head().t()
    cap = cfg["final_softcap"]
    if cap > 0:
        logits = cap * torch.tanh(logits / cap)
    return logits


def token_losses(logits, targets):
    """Per-token cross-entropy [B, T] (natural log) of logits [B, T, V] against targets [B, T]."""
    logits = torch.as_tensor(logits)
    targets = torch.as_tensor(targets).long()
    V = logits.shape[-1]
    if targets.shape != logits.shape[:-1]:
        raise FormatError("targets shape {} does not match logits {}".format(list(targets.shape), list(logits.shape)))
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= V):
        raise FormatError("targets outside [0, {}): min {} max {}".format(V, int(targets.min()), int(targets.max())))
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return torch.logsumexp(logits, dim=-1) - picked


# ----------------------------------------------------------------------------------------------
# CLI


def _read_test(f, path, name, ndim):
    key = "test/" + name
    if key not in f or not isinstance(f[key], h5py.Dataset):
        raise FormatError("{}: missing dataset '/{}'".format(path, key))
    a = np.array(f[key][()])
    if a.ndim != ndim:
        raise FormatError("{}: dataset '/{}' has {} dimensions, expected {}".format(path, key, a.ndim, ndim))
    return torch.from_numpy(a)


def _check_close(name, got, ref, atol, rtol):
    """(ok, max|diff|, scale, failure message or None)."""
    diff = (got.to(torch.float64) - ref).abs()
    diff = torch.nan_to_num(diff, nan=float("inf"))  # a NaN from flowlm must fail, not vanish
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    worst = float(diff.max()) if diff.numel() else 0.0
    allowed = atol + rtol * scale
    if worst <= allowed:
        return True, worst, scale, None
    pos = np.unravel_index(int(diff.argmax()), tuple(diff.shape))
    pos = [int(i) for i in pos]
    n_bad = int((diff > allowed).sum())
    msg = "{} mismatch at {}: flowlm {:.9g} vs reference {:.9g} (|d| = {:.3g} > allowed {:.3g} = atol {:g} + " \
          "rtol {:g} * scale {:.3g}); {} of {} entries out of tolerance".format(
              name, pos, float(got[tuple(pos)]), float(ref[tuple(pos)]), worst, allowed, atol, rtol, scale, n_bad,
              diff.numel())
    return False, worst, scale, msg


def compare(path, rtol=1e-4, atol=1e-4):
    """Exit status for `compare`: 0 when flowlm's /test/logits and /test/losses match the reference."""
    path = str(path)
    cfg, weights = load(path)
    with h5py.File(path, "r") as f:
        tokens = _read_test(f, path, "tokens", 2)
        targets = _read_test(f, path, "targets", 2)
        logits = _read_test(f, path, "logits", 3)
        losses = _read_test(f, path, "losses", 2)
    B, T = tokens.shape
    expect = {"targets": (targets, [B, T]), "logits": (logits, [B, T, cfg["vocab_size"]]), "losses": (losses, [B, T])}
    for name, (t, shape) in expect.items():
        if list(t.shape) != shape:
            raise FormatError("{}: dataset '/test/{}' has shape {}, expected {}".format(
                path, name, list(t.shape), shape))
    try:
        ref_logits = forward(cfg, weights, tokens)
        ref_losses = token_losses(ref_logits, targets)
    except FormatError as e:
        raise FormatError("{}: {}".format(path, e)) from None

    ok_l, d_l, scale_l, msg_l = _check_close("logits", logits, ref_logits, atol, rtol)
    ok_c, d_c, _, msg_c = _check_close("losses", losses, ref_losses, atol, rtol)
    print("torch_reference: arch={} max|dlogits|={:.2g} (scale {:.3g}) max|dloss|={:.2g}".format(
        cfg["arch"], d_l, scale_l, d_c))
    for msg in (msg_l, msg_c):
        if msg:
            print("torch_reference: {}: {}".format(path, msg))
    return 0 if ok_l and ok_c else 1


def main(argv=None):
    ap = argparse.ArgumentParser(prog="torch_reference.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    cp = sub.add_parser("compare", help="check flowlm's /test/logits and /test/losses against the reference")
    cp.add_argument("file", help="HDF5 file with /model and /test")
    cp.add_argument("--rtol", type=float, default=1e-4, help="tolerance relative to max|reference| (default 1e-4)")
    cp.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance (default 1e-4)")
    args = ap.parse_args(argv)
    try:
        return compare(args.file, rtol=args.rtol, atol=args.atol)
    except FormatError as e:
        print("torch_reference: error: {}".format(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
