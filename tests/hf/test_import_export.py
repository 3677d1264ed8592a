"""flowlm import / export against transformers itself.

Every family is a random-initialised transformers model built from a small config (nothing is
downloaded), saved with save_pretrained, imported with `flowlm import`, and compared on logits and
per-token losses with transformers' own forward (fp32, eager attention). Exports load with
from_pretrained and give flowlm's logits; import -> export round-trips the safetensors bit-exactly.
Run by CTest as hf.import_export with the pinned venv (tests/python-requirements.txt).
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
import safetensors.torch as st_torch
from safetensors.numpy import load_file, save_file

FLOWLM = os.environ.get("FLOWLM_BIN")
LOGITS = os.environ.get("FLOWLM_HF_LOGITS")
pytestmark = pytest.mark.skipif(not (FLOWLM and LOGITS), reason="FLOWLM_BIN / FLOWLM_HF_LOGITS not set (run via ctest)")

V = 256  # byte-level vocabulary, so the byte tokenizer can make data for the end-to-end test
T = 20   # longer than the sliding windows below

# Small configs that exercise what distinguishes each family: GQA, qkv biases, a sliding window
# shorter than the sequence, Gemma-2's soft-caps and query scale different from head_dim.
FAMILIES = {
    "gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel,
             dict(vocab_size=V, n_positions=32, n_embd=32, n_layer=2, n_head=4, n_inner=None,
                  layer_norm_epsilon=1e-5)),
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM,
              dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                   rms_norm_eps=1e-6, rope_theta=500.0, tie_word_embeddings=False)),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM,
                dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
                     sliding_window=7, rms_norm_eps=1e-5, rope_theta=10000.0)),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM,
              dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                   rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True)),
    "gemma2": (transformers.Gemma2Config, transformers.Gemma2ForCausalLM,
               dict(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                    query_pre_attn_scalar=12, attn_logit_softcapping=5.0, final_logit_softcapping=3.0,
                    sliding_window=6, rms_norm_eps=1e-6)),
}


def run(*args, check=True):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{args} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def make_hf(family, seed=0):
    cfg_cls, model_cls, kw = FAMILIES[family]
    torch.manual_seed(seed)
    cfg = cfg_cls(**kw)
    cfg._attn_implementation = "eager"
    model = model_cls(cfg).eval()
    # Norm gains and biases away from their init, so a wrong convention shows.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
            else:
                p.mul_(8.0)  # 0.02 init -> 0.16: logits that differ visibly between positions
    return model


def tokens(seed=1, batch=2):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, V, size=(batch, T))).long()


def hf_forward(model, x):
    with torch.no_grad():
        logits = model(x, use_cache=False).logits.float()
    losses = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), x[:, 1:].reshape(-1),
                                               reduction="none").reshape(x.shape[0], -1)
    return logits.numpy(), losses.numpy()


def flowlm_forward(ckpt, x, tmp):
    tok = tmp / "tokens.txt"
    tok.write_text(f"{x.shape[0]} {x.shape[1]}\n" + " ".join(str(int(v)) for v in x.flatten()) + "\n")
    out = tmp / "logits.f32"
    run(LOGITS, ckpt, tok, out)
    raw = np.fromfile(out, dtype=np.float32)
    B, n = x.shape[0], x.numel()
    logits = raw[: n * V].reshape(B, T, V)
    losses = raw[n * V:].reshape(B, T)[:, :-1]
    return logits, losses


def assert_close(a, b, what):
    err = np.max(np.abs(a - b))
    scale = max(1.0, float(np.max(np.abs(b))))
    assert err <= 2e-5 * scale, f"{what}: max |diff| {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_import_matches_transformers_and_export_round_trips(family, tmp_path):
    model = make_hf(family)
    src = tmp_path / "hf"
    model.save_pretrained(src, safe_serialization=True)
    ckpt = tmp_path / "imported.h5"
    run(FLOWLM, "import", src, ckpt)

    x = tokens()
    want_logits, want_losses = hf_forward(model, x)
    got_logits, got_losses = flowlm_forward(ckpt, x, tmp_path)
    assert np.std(want_logits) > 0.1, "degenerate test model"
    assert_close(got_logits, want_logits, f"{family} logits")
    assert_close(got_losses, want_losses, f"{family} per-token losses")

    out = tmp_path / "exported"
    run(FLOWLM, "export", ckpt, out)
    a, b = load_file(src / "model.safetensors"), load_file(out / "model.safetensors")
    assert sorted(a) == sorted(b), f"{family}: exported tensors {sorted(set(a) ^ set(b))} differ in name"
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name]), f"{family}: {name} not bit-exact"
    back = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    assert type(back) is type(model)
    assert_close(hf_forward(back, x)[0], want_logits, f"{family} logits after export")


def test_trained_model_exports_with_flowlm_logits_sharded_and_bf16(tmp_path):
    """A flowlm-trained Llama (random init, a few steps on text) exported in shards loads in
    transformers with flowlm's logits; bf16 export is the rounded weights, and it imports back."""
    text = tmp_path / "text.txt"
    text.write_text(("The quick brown fox jumps over the lazy dog. " * 200) + "\n")
    job = tmp_path / "job.toml"
    job.write_text(f"""
[run]
dir = "{tmp_path / 'run'}"
[model]
arch = "llama"
n_layer = 2
n_head = 4
n_kv_head = 2
n_embd = 32
block_size = 32
vocab_size = 256
[prepare]
inputs = ["{text}"]
output_dir = "{tmp_path / 'data'}"
name = "text"
val_fraction = 0.1
[data]
train = ["{tmp_path / 'data'}/text_train_*.bin"]
[train]
seq_len = 16
global_batch = 4
micro_batch = 4
max_steps = 5
[optim]
lr = 3e-3
warmup_steps = 0
""")
    run(FLOWLM, "prepare", job)
    run(FLOWLM, "train", job)
    ckpt = tmp_path / "run" / "step_00000005.h5"
    out = tmp_path / "sharded"
    run(FLOWLM, "export", ckpt, out, "--max-shard-gb", "0.00002")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    model = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    assert isinstance(model, transformers.LlamaForCausalLM)
    x = tokens(seed=3)
    assert_close(hf_forward(model, x)[0], flowlm_forward(ckpt, x, tmp_path)[0], "trained llama logits")

    # The sharded directory imports back to the same weights.
    again = tmp_path / "again.h5"
    run(FLOWLM, "import", out, again)
    assert_close(flowlm_forward(again, x, tmp_path)[0], flowlm_forward(ckpt, x, tmp_path)[0], "re-imported")

    # bf16: the exported weights are the fp32 ones rounded to nearest even, as torch rounds.
    bf = tmp_path / "bf16"
    run(FLOWLM, "export", ckpt, bf, "--dtype", "bf16")
    m16 = transformers.AutoModelForCausalLM.from_pretrained(bf, torch_dtype=torch.bfloat16)
    for name, p in m16.state_dict().items():
        ref = model.state_dict()[name].to(torch.bfloat16)
        assert torch.equal(p, ref), f"bf16 {name} is not torch's rounding"
    # and bf16 -> import -> export bf16 is bit-exact
    b16 = tmp_path / "b16.h5"
    run(FLOWLM, "import", bf, b16)
    bf2 = tmp_path / "bf16_again"
    run(FLOWLM, "export", b16, bf2, "--dtype", "bf16")
    one, two = st_torch.load_file(bf / "model.safetensors"), st_torch.load_file(bf2 / "model.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        assert one[name].dtype == torch.bfloat16 and torch.equal(one[name], two[name]), name


def test_hub_style_gpt2_names_and_tied_head(tmp_path):
    """The hub's gpt2 files name tensors without 'transformer.' and carry attention-mask buffers."""
    model = make_hf("gpt2", seed=4)
    src = tmp_path / "hub"
    model.save_pretrained(src, safe_serialization=True)
    w = load_file(src / "model.safetensors")
    hub = {k.removeprefix("transformer."): v for k, v in w.items()}
    for l in range(2):
        hub[f"h.{l}.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), dtype=np.float32))
    save_file(hub, src / "model.safetensors", metadata={"format": "pt"})
    ckpt = tmp_path / "gpt2.h5"
    run(FLOWLM, "import", src, ckpt)
    x = tokens(seed=5)
    assert_close(flowlm_forward(ckpt, x, tmp_path)[0], hf_forward(model, x)[0], "hub-style gpt2")


def write_model(tmp_path, family="llama", **config_changes):
    model = make_hf(family)
    src = tmp_path / f"hf_{family}"
    model.save_pretrained(src, safe_serialization=True)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(config_changes)
    (src / "config.json").write_text(json.dumps(cfg))
    return src


@pytest.mark.parametrize("change, words", [
    (dict(architectures=["BertForMaskedLM"]), ["BertForMaskedLM", "not supported"]),
    (dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}), ["rope_scaling", "llama3"]),
    (dict(hidden_act="gelu"), ["hidden_act", "gelu"]),
    (dict(attention_bias=True), ["attention_bias"]),
    (dict(num_attention_heads="four"), ["num_attention_heads", "integer"]),
])
def test_unsupported_configs_are_refused_by_name(tmp_path, change, words):
    src = write_model(tmp_path, **change)
    out = tmp_path / "x.h5"
    p = run(FLOWLM, "import", src, out, check=False)
    assert p.returncode == 1, p.stderr
    for w in words:
        assert w in p.stderr, f"{w!r} not in: {p.stderr}"
    assert "config.json" in p.stderr
    assert not out.exists()


def test_corrupt_weights_are_refused_and_leave_existing_checkpoint(tmp_path):
    src = write_model(tmp_path)
    out = tmp_path / "ok.h5"
    run(FLOWLM, "import", src, out)
    before = out.read_bytes()
    st = src / "model.safetensors"
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])  # truncated: the tensors run past the end
    p = run(FLOWLM, "import", src, out, check=False)
    assert p.returncode == 1 and "model.safetensors" in p.stderr, p.stderr
    assert out.read_bytes() == before

    # A tensor missing from the file is named.
    model = make_hf("llama")
    model.save_pretrained(src, safe_serialization=True)
    w = load_file(st)
    del w["model.layers.1.mlp.down_proj.weight"]
    save_file(w, st, metadata={"format": "pt"})
    p = run(FLOWLM, "import", src, out, check=False)
    assert p.returncode == 1 and "model.layers.1.mlp.down_proj.weight" in p.stderr, p.stderr


def test_export_refuses_what_the_architecture_cannot_express(tmp_path):
    src = write_model(tmp_path, family="mistral")
    ckpt = tmp_path / "m.h5"
    run(FLOWLM, "import", src, ckpt)
    p = run(FLOWLM, "export", ckpt, tmp_path / "as_llama", "--architecture", "LlamaForCausalLM", check=False)
    assert p.returncode == 1 and "sliding_window" in p.stderr, p.stderr
    p = run(FLOWLM, "export", ckpt, tmp_path / "bad", "--architecture", "FooForCausalLM", check=False)
    assert p.returncode == 2 and "FooForCausalLM" in p.stderr, p.stderr


def test_imported_model_scores_flow_finetunes_and_exports(tmp_path):
    """import -> score -> FLOW fine-tune (the model comes from model.init_from alone) -> export,
    and the exported model is the fine-tuned one in transformers."""
    src = tmp_path / "hf"
    make_hf("llama", seed=7).save_pretrained(src, safe_serialization=True)
    base = tmp_path / "base.h5"
    run(FLOWLM, "import", src, base)
    rng = np.random.default_rng(0)
    with open(tmp_path / "task.jsonl", "w") as f:
        for _ in range(64):
            a, b = rng.integers(0, 50, size=2)
            f.write(json.dumps({"prompt": f"{a}+{b}=", "answer": f"{a + b}."}) + "\n")
    job = tmp_path / "ft.toml"
    job.write_text(f"""
[run]
dir = "{tmp_path / 'flow'}"
[prepare]
format = "jsonl"
inputs = ["{tmp_path / 'task.jsonl'}"]
output_dir = "{tmp_path / 'data'}"
name = "task"
val_fraction = 0.25
block_size = 32
[model]
init_from = "{base}"
[score]
checkpoint = "{base}"
sample_set = "{tmp_path / 'data' / 'task_train.h5'}"
output = "{tmp_path / 'scores.h5'}"
[finetune]
method = "flow"
train_set = "{tmp_path / 'data' / 'task_train.h5'}"
scores = "{tmp_path / 'scores.h5'}"
epochs = 1
[train]
global_batch = 8
micro_batch = 8
seq_len = 32
[optim]
lr = 1e-3
warmup_steps = 0
""")
    run(FLOWLM, "prepare", job)
    run(FLOWLM, "score", job)
    run(FLOWLM, "train", job)
    ckpts = sorted((tmp_path / "flow").glob("step_*.h5"))
    assert ckpts, "fine-tuning wrote no checkpoint"
    tuned = ckpts[-1]
    out = tmp_path / "exported"
    run(FLOWLM, "export", tuned, out)
    model = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    x = tokens(seed=9)
    got = hf_forward(model, x)[0]
    assert_close(got, flowlm_forward(tuned, x, tmp_path)[0], "fine-tuned llama")
    base_logits = flowlm_forward(base, x, tmp_path)[0]
    assert np.max(np.abs(got - base_logits)) > 1e-3, "fine-tuning did not change the model"

    # A [model] key that contradicts the checkpoint is refused by name.
    p = run(FLOWLM, "train", job, "--set", "model.n_layer=3", "--set", f"run.dir={tmp_path / 'bad'}", check=False)
    assert p.returncode == 1 and "model.n_layer" in p.stderr and str(base) in p.stderr, p.stderr
