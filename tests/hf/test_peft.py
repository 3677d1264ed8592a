"""flowlm's LoRA against PEFT itself.

For every family: a random transformers model is imported, flowlm trains LoRA adapters on it for a
few steps (so B != 0), `flowlm export --adapter` writes PEFT's adapter_config.json and
adapter_model.safetensors, and PEFT loads them onto the same base with flowlm's logits. The merged
export (`flowlm export` of the LoRA checkpoint, and `flowlm merge`) equals PEFT's merge_and_unload.
Run by CTest as hf.peft with the pinned venv (tests/python-requirements*.txt).
"""

import json

import numpy as np
import pytest
import torch
import transformers

from test_import_export import FAMILIES, FLOWLM, assert_close, flowlm_forward, hf_forward, make_hf, run, tokens

peft = pytest.importorskip("peft")

TARGETS = {
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "v_proj", "down_proj"],
    "qwen2": ["k_proj", "o_proj", "up_proj"],
    "gemma2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def lora_job(tmp_path, base, family, r=4, alpha=8):
    rng = np.random.default_rng(0)
    with open(tmp_path / "task.jsonl", "w") as f:
        for _ in range(32):
            a, b = rng.integers(0, 50, size=2)
            f.write(json.dumps({"prompt": f"{a}+{b}=", "answer": f"{a + b}."}) + "\n")
    targets = ", ".join(f'"{t}"' for t in TARGETS[family])
    job = tmp_path / "lora.toml"
    job.write_text(f"""
[run]
dir = "{tmp_path / 'lora'}"
[prepare]
format = "jsonl"
inputs = ["{tmp_path / 'task.jsonl'}"]
output_dir = "{tmp_path / 'data'}"
name = "task"
val_fraction = 0.0
block_size = 32
[model]
init_from = "{base}"
[finetune]
train_set = "{tmp_path / 'data' / 'task_train.h5'}"
lora = {{r = {r}, alpha = {alpha}, targets = [{targets}]}}
[train]
global_batch = 8
micro_batch = 8
seq_len = 32
max_steps = 4
[optim]
lr = 3e-2
warmup_steps = 0
""")
    return job


@pytest.mark.parametrize("family", list(FAMILIES))
def test_peft_loads_our_adapters_with_our_logits(family, tmp_path):
    model = make_hf(family, seed=3)
    src = tmp_path / "hf"
    model.save_pretrained(src, safe_serialization=True)
    base = tmp_path / "base.h5"
    run(FLOWLM, "import", src, base)
    job = lora_job(tmp_path, base, family)
    run(FLOWLM, "prepare", job)
    p = run(FLOWLM, "train", job)
    assert "LoRA r = 4" in p.stderr + p.stdout, "the trainer should report the adapters"
    ckpt = tmp_path / "lora" / "step_00000004.h5"

    adapter = tmp_path / "adapter"
    run(FLOWLM, "export", ckpt, adapter, "--adapter")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8 and sorted(cfg["target_modules"]) == sorted(TARGETS[family])

    x = tokens(seed=5)
    ours = flowlm_forward(ckpt, x, tmp_path)[0]
    base_logits = hf_forward(model, x)[0]
    assert np.max(np.abs(ours - base_logits)) > 1e-3, "the adapters did not change the model"

    tuned = peft.PeftModel.from_pretrained(
        transformers.AutoModelForCausalLM.from_pretrained(src, attn_implementation="eager"), adapter).eval()
    with torch.no_grad():
        got = tuned(x, use_cache=False).logits.float().numpy()
    assert_close(ours, got, f"{family}: PEFT with flowlm's adapters")

    # Folded: flowlm's merged export == PEFT's merge_and_unload.
    merged_dir = tmp_path / "merged"
    run(FLOWLM, "export", ckpt, merged_dir)
    merged = transformers.AutoModelForCausalLM.from_pretrained(merged_dir, attn_implementation="eager").eval()
    unloaded = tuned.merge_and_unload().eval()
    assert_close(hf_forward(merged, x)[0], hf_forward(unloaded, x)[0], f"{family}: merged export vs PEFT merge")

    # flowlm merge gives a plain checkpoint with the same logits; --adapter refuses it.
    plain = tmp_path / "merged.h5"
    run(FLOWLM, "merge", ckpt, plain)
    assert_close(flowlm_forward(plain, x, tmp_path)[0], ours, f"{family}: flowlm merge")
    p = run(FLOWLM, "export", plain, tmp_path / "bad", "--adapter", check=False)
    assert p.returncode != 0 and "not LoRA adapters" in p.stderr, p.stderr


def test_lora_checkpoint_errors_name_the_problem(tmp_path):
    model = make_hf("llama", seed=4)
    src = tmp_path / "hf"
    model.save_pretrained(src, safe_serialization=True)
    base = tmp_path / "base.h5"
    run(FLOWLM, "import", src, base)
    job = lora_job(tmp_path, base, "llama")
    run(FLOWLM, "prepare", job)
    # A target the family does not have, dropout, LoRA without a base.
    for sets, words in [
        (["finetune.lora.targets=[\"c_attn\"]"], ["c_attn", "q_proj"]),
        (["finetune.lora.dropout=0.05"], ["finetune.lora.dropout", "set it to 0"]),
        (["model.init_from="], ["finetune.lora.r", "model.init_from"]),
    ]:
        args = [FLOWLM, "train", job, "--set", f"run.dir={tmp_path / 'bad'}"]
        for s in sets:
            args += ["--set", s]
        p = run(*args, check=False)
        assert p.returncode != 0 and all(w in p.stderr for w in words), (sets, p.stderr)
    run(FLOWLM, "train", job)
    ckpt = tmp_path / "lora" / "step_00000004.h5"
    # Averaging adapters is refused; a moved base is named.
    p = run(FLOWLM, "average", job, "--set", f"average.inputs=[\"{ckpt}\"]", "--set", "average.mode=swa",
            "--set", f"average.output_dir={tmp_path / 'avg'}", check=False)
    assert p.returncode != 0 and "flowlm merge" in p.stderr, p.stderr
    base.rename(tmp_path / "moved.h5")
    p = run(FLOWLM, "export", ckpt, tmp_path / "out", check=False)
    assert p.returncode != 0 and "does not exist" in p.stderr and str(base) in p.stderr, p.stderr
