"""Tests of torch_reference.py itself, so the C++ tests can trust it as the yardstick.

Tiny random models of each family are written to temporary HDF5 files in the checkpoint format and
checked against an independent per-token numpy implementation and against structural properties
(causality, GQA, soft-caps, sliding windows), plus the `compare` CLI's exit statuses.
"""

import math
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch_reference as tr  # noqa: E402

SCRIPT = HERE / "torch_reference.py"
ARCHS = ("gpt2", "llama", "gemma2")


# ----------------------------------------------------------------------------------------------
# Tiny models and the file format, written here independently of the module under test.


def make_config(arch, **over):
    base = dict(n_layer=2, n_embd=16, n_head=4, vocab_size=37, block_size=16, sliding_window=0,
                sliding_window_layers="all", norm_eps=1e-5, rope_theta=10000.0, attn_softcap=0.0,
                final_softcap=0.0, post_norms=0)
    if arch == "gpt2":
        base.update(arch="gpt2", n_kv_head=4, head_dim=4, n_ff=64, norm="layernorm", pos="learned", mlp="gelu",
                    biases="all", embed_scale=1.0, query_scale=0.5, tie_embeddings=1)
    elif arch == "llama":
        base.update(arch="llama", n_kv_head=2, head_dim=8, n_ff=24, norm="rmsnorm", pos="rope", mlp="swiglu",
                    biases="none", embed_scale=1.0, query_scale=1 / math.sqrt(8), tie_embeddings=0,
                    norm_eps=1e-6, rope_theta=500.0)
    elif arch == "gemma2":
        # query_pre_attn_scalar = 6 here (not head_dim) so a reference that ignores query_scale fails.
        base.update(arch="gemma2", n_kv_head=2, head_dim=8, n_ff=32, norm="rmsnorm_plus_one", pos="rope",
                    mlp="geglu", biases="none", embed_scale=math.sqrt(16), query_scale=6 ** -0.5,
                    tie_embeddings=1, post_norms=1, attn_softcap=5.0, final_softcap=3.0, sliding_window=4,
                    sliding_window_layers="alternate", norm_eps=1e-6)
    base.update(over)
    return base


def make_weights(cfg, seed=0, std=0.3):
    """HF-named float32 arrays for cfg (random, with norm gains near their identity)."""
    rng = np.random.default_rng(seed)
    C, H, K, d, F, V = (cfg[k] for k in ("n_embd", "n_head", "n_kv_head", "head_dim", "n_ff", "vocab_size"))
    w = {}

    def rand(name, *shape, s=std):
        w[name] = (rng.standard_normal(shape) * s).astype(np.float32)

    def norm(name):
        gain = 0.0 if cfg["norm"] == "rmsnorm_plus_one" else 1.0
        w[name + ".weight"] = (gain + 0.2 * rng.standard_normal(C)).astype(np.float32)
        if cfg["norm"] == "layernorm" and cfg["biases"] == "all":
            rand(name + ".bias", C, s=0.1)

    all_b = cfg["biases"] == "all"
    qkv_b = cfg["biases"] in ("all", "qkv")
    if cfg["arch"] == "gpt2":
        rand("transformer.wte.weight", V, C)
        rand("transformer.wpe.weight", cfg["block_size"], C)
        for l in range(cfg["n_layer"]):
            p = "transformer.h.{}.".format(l)
            norm(p + "ln_1")
            rand(p + "attn.c_attn.weight", C, (H + 2 * K) * d)
            if qkv_b:
                rand(p + "attn.c_attn.bias", (H + 2 * K) * d, s=0.1)
            rand(p + "attn.c_proj.weight", H * d, C)
            norm(p + "ln_2")
            rand(p + "mlp.c_fc.weight", C, F)
            rand(p + "mlp.c_proj.weight", F, C)
            if all_b:
                rand(p + "attn.c_proj.bias", C, s=0.1)
                rand(p + "mlp.c_fc.bias", F, s=0.1)
                rand(p + "mlp.c_proj.bias", C, s=0.1)
        norm("transformer.ln_f")
    else:
        rand("model.embed_tokens.weight", V, C, s=std / math.sqrt(cfg["embed_scale"]))
        for l in range(cfg["n_layer"]):
            p = "model.layers.{}.".format(l)
            norm(p + "input_layernorm")
            for proj, n_out in (("q", H * d), ("k", K * d), ("v", K * d)):
                rand(p + "self_attn.{}_proj.weight".format(proj), n_out, C)
                if qkv_b:
                    rand(p + "self_attn.{}_proj.bias".format(proj), n_out, s=0.1)
            rand(p + "self_attn.o_proj.weight", C, H * d)
            norm(p + "post_attention_layernorm")
            if cfg["arch"] == "gemma2":
                norm(p + "pre_feedforward_layernorm")
                norm(p + "post_feedforward_layernorm")
            rand(p + "mlp.gate_proj.weight", F, C)
            rand(p + "mlp.up_proj.weight", F, C)
            rand(p + "mlp.down_proj.weight", C, F)
        norm("model.norm")
        if not cfg["tie_embeddings"]:
            rand("lm_head.weight", V, C)
    return w


def write_h5(path, cfg, weights, test=None, bytes_strings=False):
    with h5py.File(path, "w") as f:
        g = f.create_group("model")
        for k, v in cfg.items():
            if isinstance(v, str) and bytes_strings:
                g.attrs[k] = np.bytes_(v)  # fixed-length ASCII, as many C++ writers store strings
            elif isinstance(v, int):
                g.attrs[k] = np.int64(v)
            else:
                g.attrs[k] = v
        g.attrs["format_version"] = np.int64(1)  # unrelated attributes must be ignored
        g.attrs["step"] = np.int64(7)
        for name, a in weights.items():
            g.create_dataset(name, data=np.asarray(a, dtype=np.float32))
        if test:
            t = f.create_group("test")
            for name, a in test.items():
                t.create_dataset(name, data=a)
    return path


def tokens_for(cfg, B=2, T=10, seed=1):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, cfg["vocab_size"], (B, T)))


def ref_logits(cfg, weights, tokens):
    return tr.forward(cfg, {k: torch.from_numpy(v) for k, v in weights.items()}, tokens)


# ----------------------------------------------------------------------------------------------
# An independent implementation: per sequence, per position, per head, in numpy, with each
# family's tensor names and layouts spelt out and RoPE done as explicit pair rotations.


def np_forward(cfg, weights, tokens):
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    arch, L, C, H, K, d = (cfg[k] for k in ("arch", "n_layer", "n_embd", "n_head", "n_kv_head", "head_dim"))
    eps, group = cfg["norm_eps"], H // K
    tokens = np.asarray(tokens)
    B, T = tokens.shape

    def norm(x, name):
        if cfg["norm"] == "layernorm":
            y = (x - x.mean()) / math.sqrt(x.var() + eps) * w[name + ".weight"]
            return y + w[name + ".bias"] if name + ".bias" in w else y
        y = x / math.sqrt(np.mean(x * x) + eps)
        return y * (1 + w[name + ".weight"]) if cfg["norm"] == "rmsnorm_plus_one" else y * w[name + ".weight"]

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    def rotate(vec, pos):
        out = vec.copy()
        for i in range(d // 2):
            ang = pos / cfg["rope_theta"] ** (2 * i / d)
            a, b = vec[i], vec[i + d // 2]
            out[i] = a * math.cos(ang) - b * math.sin(ang)
            out[i + d // 2] = b * math.cos(ang) + a * math.sin(ang)
        return out

    def hf_lin(x, name):
        y = w[name + ".weight"] @ x
        return y + w[name + ".bias"] if name + ".bias" in w else y

    logits = np.zeros((B, T, cfg["vocab_size"]))
    for b in range(B):
        if arch == "gpt2":
            xs = [w["transformer.wte.weight"][tokens[b, t]] for t in range(T)]
            if cfg["pos"] == "learned":
                xs = [x + w["transformer.wpe.weight"][t] for t, x in enumerate(xs)]
        else:
            xs = [w["model.embed_tokens.weight"][tokens[b, t]] * cfg["embed_scale"] for t in range(T)]
        for l in range(L):
            qs, ks, vs = [], [], []
            for t in range(T):
                if arch == "gpt2":
                    p = "transformer.h.{}.".format(l)
                    h = norm(xs[t], p + "ln_1")
                    qkv = h @ w[p + "attn.c_attn.weight"]
                    if p + "attn.c_attn.bias" in w:
                        qkv = qkv + w[p + "attn.c_attn.bias"]
                    q, k, v = qkv[:H * d], qkv[H * d:(H + K) * d], qkv[(H + K) * d:]
                else:
                    p = "model.layers.{}.".format(l)
                    h = norm(xs[t], p + "input_layernorm")
                    q, k, v = (hf_lin(h, p + "self_attn.{}_proj".format(n)) for n in "qkv")
                qh = [q[i * d:(i + 1) * d] for i in range(H)]
                kh = [k[i * d:(i + 1) * d] for i in range(K)]
                if cfg["pos"] == "rope":
                    qh = [rotate(x, t) for x in qh]
                    kh = [rotate(x, t) for x in kh]
                qs.append(qh)
                ks.append(kh)
                vs.append([v[i * d:(i + 1) * d] for i in range(K)])
            windowed = cfg["sliding_window"] > 0 and (cfg["sliding_window_layers"] == "all" or l % 2 == 0)
            new_xs = []
            for t in range(T):
                heads = []
                for hd in range(H):
                    kv = hd // group
                    js = [j for j in range(t + 1) if not windowed or t - j < cfg["sliding_window"]]
                    s = np.array([float(np.dot(qs[t][hd], ks[j][kv])) * cfg["query_scale"] for j in js])
                    if cfg["attn_softcap"] > 0:
                        s = cfg["attn_softcap"] * np.tanh(s / cfg["attn_softcap"])
                    e = np.exp(s - s.max())
                    e /= e.sum()
                    heads.append(sum(pj * vs[j][kv] for pj, j in zip(e, js)))
                y = np.concatenate(heads)
                if arch == "gpt2":
                    a = y @ w[p + "attn.c_proj.weight"]
                    a = a + w[p + "attn.c_proj.bias"] if p + "attn.c_proj.bias" in w else a
                    x = xs[t] + a
                    h = norm(x, p + "ln_2") @ w[p + "mlp.c_fc.weight"]
                    h = gelu(h + w[p + "mlp.c_fc.bias"] if p + "mlp.c_fc.bias" in w else h)
                    m = h @ w[p + "mlp.c_proj.weight"]
                    m = m + w[p + "mlp.c_proj.bias"] if p + "mlp.c_proj.bias" in w else m
                    new_xs.append(x + m)
                    continue
                a = hf_lin(y, p + "self_attn.o_proj")
                if cfg["post_norms"]:
                    a = norm(a, p + "post_attention_layernorm")
                x = xs[t] + a
                pre_mlp = "pre_feedforward_layernorm" if arch == "gemma2" else "post_attention_layernorm"
                h = norm(x, p + pre_mlp)
                g = hf_lin(h, p + "mlp.gate_proj")
                act = g / (1 + np.exp(-g)) if cfg["mlp"] == "swiglu" else gelu(g)
                m = hf_lin(act * hf_lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
                if cfg["post_norms"]:
                    m = norm(m, p + "post_feedforward_layernorm")
                new_xs.append(x + m)
            xs = new_xs
        for t in range(T):
            if arch == "gpt2":
                head = w["transformer.wte.weight"] if cfg["tie_embeddings"] else w["lm_head.weight"]
                z = head @ norm(xs[t], "transformer.ln_f")
            else:
                head = w["model.embed_tokens.weight"] if cfg["tie_embeddings"] else w["lm_head.weight"]
                z = head @ norm(xs[t], "model.norm")
            if cfg["final_softcap"] > 0:
                z = cfg["final_softcap"] * np.tanh(z / cfg["final_softcap"])
            logits[b, t] = z
    return logits


VARIANTS = {
    "gpt2": make_config("gpt2"),
    "gpt2_untied_rope_window": make_config("gpt2", tie_embeddings=0, pos="rope", sliding_window=3),
    "llama": make_config("llama"),
    "qwen2_qkv_bias_tied": make_config("llama", biases="qkv", tie_embeddings=1),
    "mistral_window": make_config("llama", sliding_window=3, n_kv_head=1),
    "gemma2": make_config("gemma2"),
    "gemma2_no_post_norms_no_caps": make_config("gemma2", post_norms=0, attn_softcap=0.0, final_softcap=0.0,
                                                 sliding_window=0),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_matches_numpy_loops(variant):
    cfg = VARIANTS[variant]
    weights = make_weights(cfg)
    if variant == "gpt2_untied_rope_window":
        weights["lm_head.weight"] = np.random.default_rng(5).standard_normal((37, 16)).astype(np.float32)
    tokens = tokens_for(cfg)
    got = ref_logits(cfg, weights, tokens)
    want = np_forward(cfg, weights, tokens.numpy())
    assert got.dtype == torch.float64 and tuple(got.shape) == (2, 10, 37)
    assert float(np.abs(want).max()) > 0.5  # the model is not degenerate
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)


def test_numpy_check_can_fail():
    # The independent check must be sensitive to a small semantic slip (here eps).
    cfg = make_config("llama")
    weights = make_weights(cfg)
    tokens = tokens_for(cfg)
    want = np_forward(dict(cfg, norm_eps=1e-2), weights, tokens.numpy())
    assert not np.allclose(ref_logits(cfg, weights, tokens).numpy(), want, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("bytes_strings", [False, True], ids=["str", "bytes"])
@pytest.mark.parametrize("arch", ARCHS)
def test_load_roundtrip(tmp_path, arch, bytes_strings):
    cfg = make_config(arch)
    weights = make_weights(cfg)
    path = write_h5(tmp_path / "m.h5", cfg, weights, bytes_strings=bytes_strings)
    got_cfg, got_w = tr.load(path)
    assert got_cfg == cfg
    for k in tr.STR_ATTRS:
        assert type(got_cfg[k]) is str
    for k in tr.INT_ATTRS:
        assert type(got_cfg[k]) is int
    for k in tr.FLOAT_ATTRS:
        assert type(got_cfg[k]) is float
    assert sorted(got_w) == sorted(weights)
    for k, v in weights.items():
        assert got_w[k].dtype == torch.float32
        assert np.array_equal(got_w[k].numpy(), v), k
    tokens = tokens_for(cfg)
    assert torch.equal(tr.forward(got_cfg, got_w, tokens), ref_logits(cfg, weights, tokens))


def test_load_odd_attribute_encodings(tmp_path):
    cfg = make_config("llama")
    path = write_h5(tmp_path / "m.h5", cfg, make_weights(cfg))
    with h5py.File(path, "a") as f:
        a = f["model"].attrs
        a["arch"] = np.array([b"llama"])  # 1-element array of fixed-length bytes
        a["norm"] = np.array(["rmsnorm"], dtype=h5py.string_dtype())  # variable-length string array
        a["n_layer"] = np.array([2], dtype=np.int32)
        a["tie_embeddings"] = np.uint8(0)
        a["norm_eps"] = np.float32(1e-6)
    got, _ = tr.load(path)
    assert got["arch"] == "llama" and got["norm"] == "rmsnorm"
    assert got["n_layer"] == 2 and got["tie_embeddings"] == 0
    assert got["norm_eps"] == pytest.approx(1e-6)


# ----------------------------------------------------------------------------------------------
# Structural properties


@pytest.mark.parametrize("arch", ARCHS)
def test_causal(arch):
    cfg = make_config(arch)
    weights = make_weights(cfg)
    tokens = tokens_for(cfg)
    base = ref_logits(cfg, weights, tokens)
    for t in (4, 9):
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] + 1) % cfg["vocab_size"]
        out = ref_logits(cfg, weights, changed)
        assert torch.allclose(out[:, :t], base[:, :t], rtol=0, atol=1e-12), t
        assert (out[:, t:] - base[:, t:]).abs().amax(dim=-1).min() > 1e-6, t  # every later position moves


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_gqa_equals_repeated_kv(arch):
    cfg = make_config(arch)  # n_head 4, n_kv_head 2: heads 0,1 read kv 0 and heads 2,3 read kv 1
    weights = make_weights(cfg)
    H, K, d = cfg["n_head"], cfg["n_kv_head"], cfg["head_dim"]
    full = dict(weights)
    for l in range(cfg["n_layer"]):
        for proj in ("k", "v"):
            name = "model.layers.{}.self_attn.{}_proj.weight".format(l, proj)
            full[name] = np.repeat(weights[name].reshape(K, d, -1), H // K, axis=0).reshape(H * d, -1)
    tokens = tokens_for(cfg)
    gqa = ref_logits(cfg, weights, tokens)
    mha = ref_logits(dict(cfg, n_kv_head=H), full, tokens)
    assert torch.allclose(gqa, mha, rtol=1e-12, atol=1e-12)
    # Pairing heads with kv heads the other way round (h % K) is a different model: the check bites.
    wrong = dict(weights)
    for l in range(cfg["n_layer"]):
        for proj in ("k", "v"):
            name = "model.layers.{}.self_attn.{}_proj.weight".format(l, proj)
            wrong[name] = np.tile(weights[name].reshape(K, d, -1), (H // K, 1, 1)).reshape(H * d, -1)
    assert not torch.allclose(gqa, ref_logits(dict(cfg, n_kv_head=H), wrong, tokens), atol=1e-6)


def test_gemma2_final_softcap_bounds_logits():
    cap = 3.0
    cfg = make_config("gemma2", final_softcap=cap)
    weights = make_weights(cfg, std=1.0)
    tokens = tokens_for(cfg)
    capped = ref_logits(cfg, weights, tokens)
    raw = ref_logits(dict(cfg, final_softcap=0.0), weights, tokens)
    assert float(raw.abs().max()) > 2 * cap  # the cap is actually exercised
    assert float(capped.abs().max()) < cap
    assert torch.allclose(capped, cap * torch.tanh(raw / cap), rtol=1e-12, atol=1e-12)


def test_gemma2_attn_softcap_matters():
    cfg = make_config("gemma2", attn_softcap=0.5)
    weights = make_weights(cfg, std=1.0)
    tokens = tokens_for(cfg)
    a = ref_logits(cfg, weights, tokens)
    b = ref_logits(dict(cfg, attn_softcap=0.0), weights, tokens)
    c = ref_logits(dict(cfg, attn_softcap=1e9), weights, tokens)  # a huge cap is no cap
    assert not torch.allclose(a, b, atol=1e-3)
    assert torch.allclose(b, c, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("arch", ARCHS)
def test_sliding_window_one_layer(arch):
    w_size = 3
    cfg = make_config(arch, n_layer=1, sliding_window=w_size)  # gemma2: alternate, so layer 0 is windowed
    weights = make_weights(cfg)
    tokens = tokens_for(cfg, T=12)
    base = ref_logits(cfg, weights, tokens)
    for src in (0, 4):
        changed = tokens.clone()
        changed[:, src] = (changed[:, src] + 1) % cfg["vocab_size"]
        diff = (ref_logits(cfg, weights, changed) - base).abs().amax(dim=(0, 2))
        # Position i sees src only while i - src < window.
        for i in range(12):
            if src <= i < src + w_size:
                assert diff[i] > 1e-6, (src, i)
            else:
                assert diff[i] <= 1e-12, (src, i)


def test_sliding_window_alternate_leaves_odd_layers_global():
    cfg = make_config("gemma2", sliding_window=3)  # layer 0 windowed, layer 1 global
    weights = make_weights(cfg)
    tokens = tokens_for(cfg, T=12)
    changed = tokens.clone()
    changed[:, 0] = (changed[:, 0] + 1) % cfg["vocab_size"]
    diff = (ref_logits(cfg, weights, changed) - ref_logits(cfg, weights, tokens)).abs().amax(dim=(0, 2))
    assert float(diff[11]) > 1e-6  # reached through the global layer 1
    # With every layer windowed, two layers of window 3 reach back at most 4 positions.
    all_cfg = dict(cfg, sliding_window_layers="all")
    diff = (ref_logits(all_cfg, weights, changed) - ref_logits(all_cfg, weights, tokens)).abs().amax(dim=(0, 2))
    assert float(diff[4]) > 1e-6 and float(diff[5:].max()) <= 1e-12


def test_token_losses():
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.standard_normal((2, 5, 7)) * 3)
    targets = torch.from_numpy(rng.integers(0, 7, (2, 5)))
    got = tr.token_losses(logits, targets)
    assert tuple(got.shape) == (2, 5)
    for b in range(2):
        for t in range(5):
            row = logits[b, t].numpy()
            want = -math.log(math.exp(row[targets[b, t]]) / np.exp(row).sum())
            assert float(got[b, t]) == pytest.approx(want, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# CLI


def compare_file(tmp_path, arch, perturb_logit=None, perturb_loss=None, drop=None, name="c.h5", attrs=None):
    cfg = make_config(arch)
    weights = make_weights(cfg)
    tokens = tokens_for(cfg, T=8)
    targets = tokens_for(cfg, T=8, seed=2)
    logits = ref_logits(cfg, weights, tokens)
    test = {"tokens": tokens.numpy().astype(np.int32), "targets": targets.numpy().astype(np.int32),
            "logits": logits.numpy().astype(np.float32),
            "losses": tr.token_losses(logits, targets).numpy().astype(np.float32)}
    if perturb_logit is not None:
        test["logits"][perturb_logit] += 1e-2
    if perturb_loss is not None:
        test["losses"][perturb_loss] += 1e-2
    if drop in test:
        del test[drop]
    elif drop in weights:
        del weights[drop]
    elif drop is not None:
        del cfg[drop]
    cfg.update(attrs or {})  # after the forward, so a bad attribute only reaches the CLI
    return write_h5(tmp_path / name, cfg, weights, test=test)


def test_cli_compare_subprocess(tmp_path):
    # The script as C++ tests run it; the exit-1/2 paths go through the same main() in-process below
    # (each interpreter start costs seconds of torch import).
    path = compare_file(tmp_path, "gpt2", name="good.h5")
    r = subprocess.run([sys.executable, str(SCRIPT), "compare", str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("torch_reference: arch=gpt2 max|dlogits|=")
    assert "(scale " in r.stdout and "max|dloss|=" in r.stdout


@pytest.mark.parametrize("arch", ARCHS)
def test_cli_compare_in_process(tmp_path, arch, capsys):
    assert tr.main(["compare", str(compare_file(tmp_path, arch, name="ok.h5"))]) == 0
    assert "arch={}".format(arch) in capsys.readouterr().out
    assert tr.main(["compare", str(compare_file(tmp_path, arch, perturb_logit=(0, 7, 36), name="l.h5"))]) == 1
    assert "logits mismatch at [0, 7, 36]" in capsys.readouterr().out
    assert tr.main(["compare", str(compare_file(tmp_path, arch, perturb_loss=(1, 2), name="c.h5"))]) == 1
    out = capsys.readouterr().out
    assert "losses mismatch at [1, 2]" in out and "logits mismatch" not in out


def test_cli_nan_fails(tmp_path, capsys):
    path = compare_file(tmp_path, "gemma2")
    with h5py.File(path, "a") as f:
        f["test/logits"][1, 2, 3] = np.nan
    assert tr.main(["compare", str(path)]) == 1
    assert "logits mismatch at [1, 2, 3]" in capsys.readouterr().out


def test_cli_rtol(tmp_path, capsys):
    path = compare_file(tmp_path, "llama", perturb_logit=(0, 0, 0))
    assert tr.main(["compare", str(path)]) == 1
    assert tr.main(["compare", str(path), "--rtol", "1"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("drop,key", [
    ("n_kv_head", "'n_kv_head'"),
    ("logits", "'/test/logits'"),
    ("targets", "'/test/targets'"),
    ("model.layers.1.mlp.up_proj.weight", "'/model/model.layers.1.mlp.up_proj.weight'"),
])
def test_cli_missing_key_exits_2(tmp_path, capsys, drop, key):
    path = compare_file(tmp_path, "llama", drop=drop)
    assert tr.main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and key in err


def test_cli_unknown_arch_exits_2(tmp_path, capsys):
    path = compare_file(tmp_path, "llama", attrs={"arch": "mamba"})
    assert tr.main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "unknown arch 'mamba'" in err


def test_cli_not_hdf5_exits_2(tmp_path, capsys):
    path = tmp_path / "junk.h5"
    path.write_text("not hdf5")
    assert tr.main(["compare", str(path)]) == 2
    assert str(path) in capsys.readouterr().err
