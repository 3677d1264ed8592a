"""analysis/ (flowlm_analysis + plot.py) on files written by the real flowlm binary.

The session fixture runs FLOWLM_BIN (set by CTest) to prepare, train a tiny run, average,
eval and score. Tests that need no binary (bad input, hand-written files) always run.
"""

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

SOURCE_DIR = Path(os.environ.get("FLOWLM_SOURCE_DIR") or Path(__file__).resolve().parents[2])
ANALYSIS_DIR = SOURCE_DIR / "analysis"
sys.path.insert(0, str(ANALYSIS_DIR))

import flowlm_analysis as fa  # noqa: E402
from flowlm_analysis import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_bin(binary, *args, cwd=None):
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "2")
    env.setdefault("OMP_PROC_BIND", "false")
    r = subprocess.run([binary, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, "flowlm {} failed ({}):\n{}\n{}".format(args[0], r.returncode, r.stdout, r.stderr)
    return r.stdout + r.stderr


def run_plot(*args):
    return subprocess.run([sys.executable, str(ANALYSIS_DIR / "plot.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def assert_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > 5000, "{}: suspiciously small PNG ({} bytes)".format(path, len(data))


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """A tiny real run: step_10/step_20 checkpoints, metrics, LAWA k=2 averages, eval.jsonl, scores.h5."""
    binary = os.environ.get("FLOWLM_BIN")
    if not binary:
        pytest.skip("FLOWLM_BIN is not set (CTest sets it to the built flowlm); fixtures need the real binary")
    if not os.access(binary, os.X_OK):
        pytest.fail("FLOWLM_BIN={} is not an executable".format(binary))
    root = tmp_path_factory.mktemp("flowlm_run")
    data, run_dir = root / "data", root / "run"
    job = SOURCE_DIR / "jobs" / "tiny.toml"
    stages = run_bin(binary, "--help")
    # jobs/tiny.toml's prepare.inputs are relative to the repository root.
    run_bin(binary, "prepare", job, "--set", "prepare.output_dir={}".format(data), cwd=SOURCE_DIR)
    common = ["--set", "run.dir={}".format(run_dir),
              "--set", 'data.train=["{}"]'.format(data / "text_train_*.bin"),
              "--set", 'data.val=["{}"]'.format(data / "text_val_*.bin")]
    run_bin(binary, "train", job, *common, "--set", "train.max_steps=20", "--set", "checkpoint.save_every=10",
            "--set", "train.val_every=10", "--set", "train.log_every=5", cwd=root)
    info = {"bin": binary, "root": root, "run": run_dir, "job": job, "data": data, "stages": stages}
    if re.search(r"^\s+average\s", stages, re.M):
        run_bin(binary, "average", job, *common, "--set", "average.k=2", cwd=root)
        info["averaged"] = run_dir / "averaged"
    if re.search(r"^\s+eval\s", stages, re.M):
        ck = [str(run_dir)] + ([str(run_dir / "averaged" / "lawa_k2_*.h5")] if "averaged" in info else [])
        run_bin(binary, "eval", job, *common, "--set", "eval.checkpoints={}".format(json.dumps(ck)),
                "--set", 'eval.sets=["{}"]'.format(data / "text_val_*.bin"), "--set", "eval.max_windows=8", cwd=root)
        info["eval"] = run_dir / "eval.jsonl"
    if re.search(r"^\s+score\s", stages, re.M):
        qa = root / "qa.jsonl"
        with open(qa, "w") as f:
            for i in range(24):
                a, b = (i * 37) % 100, (i * 53) % 100
                f.write(json.dumps({"prompt": "{}+{}=".format(a, b), "answer": str(a + b) if i % 3 else "zzz"}) + "\n")
        run_bin(binary, "prepare", job, "--set", 'prepare.inputs=["{}"]'.format(qa), "--set", "prepare.format=jsonl",
                "--set", "prepare.output_dir={}".format(root / "samples"), "--set", "prepare.name=qa",
                "--set", "prepare.block_size=64", "--set", "prepare.val_fraction=0", cwd=root)
        run_bin(binary, "score", job, *common, "--set", "score.checkpoint={}".format(run_dir / "step_00000020.h5"),
                "--set", "score.sample_set={}".format(root / "samples" / "qa_train.h5"), cwd=root)
        info["scores"] = run_dir / "scores.h5"
    return info


def need(run, key):
    if key not in run:
        pytest.skip("this flowlm has no `{}` output yet".format(key))
    return run[key]


@pytest.fixture(scope="session")
def handmade_scores(tmp_path_factory):
    """A scores.h5 with only the required datasets and none of the optional attrs."""
    path = tmp_path_factory.mktemp("scores") / "scores.h5"
    loss = np.linspace(0.5, 4.0, 50)
    with h5py.File(path, "w") as f:
        f["loss"] = loss
        f["weight"] = np.exp(-loss / 2.0)
    return path


# ---- checkpoints ---------------------------------------------------------------------------


def inspect_shapes(binary, path):
    """name -> shape of every /model dataset, parsed from `flowlm inspect`."""
    out = run_bin(binary, "inspect", path)
    shapes = {}
    for m in re.finditer(r"^\s*/model/(\S+)\s+float32\s+\[([\d, ]*)\]", out, re.M):
        shapes[m.group(1)] = tuple(int(x) for x in m.group(2).split(",") if x.strip())
    assert shapes, "could not parse `flowlm inspect` output:\n" + out
    return shapes


def test_load_checkpoint_matches_inspect_and_gpt2_shapes(run):
    path = run["run"] / "step_00000020.h5"
    ck = fa.load_checkpoint(path)
    assert ck.shapes() == inspect_shapes(run["bin"], path)
    cfg = ck.config
    L, C, V, T = (cfg["model"][k] for k in ("n_layer", "n_embd", "vocab_size", "block_size"))
    assert L == 2 and C == 64  # jobs/tiny.toml
    expect = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (T, C),
              "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    for i in range(L):
        h = "transformer.h.{}.".format(i)
        expect.update({h + "ln_1.weight": (C,), h + "attn.c_attn.weight": (C, 3 * C), h + "attn.c_attn.bias": (3 * C,),
                       h + "attn.c_proj.weight": (C, C), h + "mlp.c_fc.weight": (C, 4 * C),
                       h + "mlp.c_proj.weight": (4 * C, C), h + "mlp.c_proj.bias": (C,)})
    for name, shape in expect.items():
        assert ck[name].shape == shape, name
        assert ck[name].dtype == np.float32
        assert np.all(np.isfinite(ck[name]))
    assert not any(k.startswith("transformer.h.{}.".format(L)) for k in ck)


def test_checkpoint_attrs_are_decoded(run):
    for step in (10, 20):
        ck = fa.load_checkpoint(run["run"] / "step_{:08d}.h5".format(step))
        assert ck.step == step and isinstance(ck.attrs["step"], int)
        assert ck.attrs["format_version"] == 1
        assert ck.kind == "train"
        assert isinstance(ck.attrs["created_by"], str) and ck.attrs["created_by"].startswith("flowlm")
        t = ck.config["train"]
        assert ck.attrs["tokens_seen"] == step * t["global_batch"] * t["seq_len"]
        assert ck.config["run"]["dir"] == str(run["run"])
        assert ck.group == "model" and str(run["run"]) in ck.path


def test_load_optimizer_moments(run):
    path = run["run"] / "step_00000020.h5"
    model = fa.load_checkpoint(path)
    optim = fa.load_checkpoint(path, group="optim")
    assert len(optim) == 2 * len(model)
    for moment in ("m", "v"):
        mom = fa.load_checkpoint(path, group="optim/" + moment)
        assert mom.shapes() == model.shapes()
    v = fa.load_checkpoint(path, group="optim/v")
    assert all(np.all(a >= 0) for a in v.values())  # second moments
    sub = fa.load_checkpoint(path, names=["transformer.wte.weight"])
    assert list(sub) == ["transformer.wte.weight"]
    with pytest.raises(KeyError, match="no tensor"):
        fa.load_checkpoint(path, names=["transformer.nope.weight"])
    with pytest.raises(KeyError, match=re.escape(str(path))):
        fa.load_checkpoint(path, group="nope")


def test_list_checkpoints(run):
    found = fa.list_checkpoints(run["run"])
    assert [c.step for c in found] == [10, 20]
    assert all(os.path.basename(c.path) == "step_{:08d}.h5".format(c.step) for c in found)
    (run["root"] / "junk").mkdir(exist_ok=True)
    assert fa.list_checkpoints(run["root"] / "junk") == []
    with pytest.raises(FileNotFoundError, match="nowhere"):
        fa.list_checkpoints(run["root"] / "nowhere")


def test_averaged_checkpoint_attrs(run):
    avg = need(run, "averaged")
    found = fa.list_checkpoints(avg, prefix=None)
    assert [c.step for c in found] == [20]  # k=2 over steps 10, 20: one window
    ck = fa.load_checkpoint(found[0].path)
    assert ck.kind == "average" and ck.attrs["mode"] == "lawa"
    assert ck.attrs["source_steps"] == [10, 20]
    assert [os.path.basename(s) for s in ck.attrs["sources"]] == ["step_00000010.h5", "step_00000020.h5"]
    a = fa.load_checkpoint(run["run"] / "step_00000010.h5")
    b = fa.load_checkpoint(run["run"] / "step_00000020.h5")
    for name in ck:
        np.testing.assert_allclose(ck[name], (a[name].astype(np.float64) + b[name]) / 2, rtol=1e-5, atol=1e-6)


def test_layer_distances(run):
    p10, p20 = run["run"] / "step_00000010.h5", run["run"] / "step_00000020.h5"
    ck10 = fa.load_checkpoint(p10)
    same = fa.layer_distances(ck10, p10)
    assert list(same) == ["wte", "wpe", 0, 1, "ln_f"]
    assert all(v == 0.0 for v in same.values())
    d = fa.layer_distances(p10, p20)
    assert list(d) == list(same)
    assert all(v > 0 for v in d.values()), d
    back = fa.layer_distances(p20, ck10)
    for k in d:
        assert math.isclose(d[k], back[k], rel_tol=1e-12)
    ck20 = fa.load_checkpoint(p20)
    block0 = sum(float(np.sum((ck10[n].astype(np.float64) - ck20[n]) ** 2)) for n in ck10
                 if n.startswith("transformer.h.0."))
    assert math.isclose(d[0], math.sqrt(block0), rel_tol=1e-9)
    rel = fa.layer_distances(p10, p20, relative=True)
    norm0 = math.sqrt(sum(float(np.sum(ck10[n].astype(np.float64) ** 2)) for n in ck10
                          if n.startswith("transformer.h.0.")))
    assert math.isclose(rel[0], d[0] / norm0, rel_tol=1e-9)


def test_layer_distances_refuses_other_architectures(run, tmp_path):
    src = run["run"] / "step_00000010.h5"
    other = tmp_path / "other.h5"
    with h5py.File(src, "r") as f, h5py.File(other, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        for name, ds in f["model"].items():
            data = ds[...]
            g["model/" + name] = data[:-1] if name == "transformer.wpe.weight" else data
    with pytest.raises(fa.FlowlmFormatError, match="transformer.wpe.weight") as e:
        fa.layer_distances(src, other)
    assert str(src) in str(e.value) and str(other) in str(e.value)


# ---- metrics, eval, scores -------------------------------------------------------------------


def test_read_metrics(run):
    m = fa.read_metrics(run["run"])
    for key in ("step", "loss", "lr", "grad_norm", "tokens_seen", "val_loss"):
        assert key in m, key
    assert np.all(np.diff(m["step"]) > 0) and m["step"][-1] == 20
    assert np.all(np.isfinite(m["loss"]))
    val_steps = m["step"][~np.isnan(m["val_loss"])]
    assert list(val_steps) == [10, 20]
    again = fa.read_metrics(run["run"] / "metrics.jsonl")
    np.testing.assert_array_equal(again["loss"], m["loss"])


def test_read_eval(run):
    rows = fa.read_eval(need(run, "eval"))
    assert rows and all({"checkpoint", "step", "set"} <= r.keys() for r in rows)
    cols = fa.numeric_columns(rows)
    assert "loss" in cols and np.all(np.isfinite(cols["loss"]))
    assert sorted({r["step"] for r in rows if os.path.basename(r["checkpoint"]).startswith("step_")}) == [10, 20]


def test_read_scores_real(run):
    s = fa.read_scores(need(run, "scores"))
    assert len(s) == 24 == s.attrs["n_samples"]
    assert s.tau > 0 and s.normalization == "mean"
    assert np.all(s.n_tokens > 0)
    expect = np.exp(-s.loss / s.tau)
    np.testing.assert_allclose(s.weight, expect / expect.mean(), rtol=1e-6)
    assert math.isclose(float(np.median(s.loss)), s.tau, rel_tol=1e-6)  # flow.tau = "median"


def test_read_scores_without_optional_attrs(handmade_scores):
    s = fa.read_scores(handmade_scores)
    assert len(s) == 50
    assert s.tau is None and s.normalization is None
    assert np.all(np.isnan(s.n_tokens))


# ---- plots -----------------------------------------------------------------------------------


def make_sweep(run, root):
    """A sweep dir as slurm/sweep.py writes it: tasks.json + task_<i>/eval.jsonl."""
    rows = fa.read_eval(need(run, "eval"))
    tasks = {}
    for i, lr in enumerate([1e-3, 3e-3, 1e-2]):
        d = root / "task_{}".format(i)
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "eval.jsonl", "w") as f:
            for r in rows:
                f.write(json.dumps(dict(r, loss=r["loss"] + i * 0.1)) + "\n")
        tasks[str(i)] = {"overrides": {"optim.lr": lr}, "run_dir": str(d), "done_file": str(d / "DONE")}
    with open(root / "tasks.json", "w") as f:
        json.dump({"axes": {"optim.lr": [1e-3, 3e-3, 1e-2]}, "tasks": tasks, "dir": str(root)}, f)
    return root


def plot_cases(run, tmp):
    return {
        "loss": ["loss", run["run"], run["run"], "--labels", "a", "b", "--smooth", "3"],
        "drift": ["drift", run["run"] / "step_00000010.h5", run["run"], run["run"], "--labels", "standard", "flow"],
        "weights": ["weights", need(run, "scores")],
        "lawa": ["lawa", run["run"], need(run, "averaged"), "--eval", need(run, "eval")],
        "sweep": ["sweep", make_sweep(run, tmp / "sweep")],
    }


@pytest.mark.parametrize("kind", ["loss", "drift", "weights", "lawa", "sweep"])
def test_plot_cli_writes_png(run, tmp_path, kind):
    out = tmp_path / "out"
    r = run_plot(*plot_cases(run, tmp_path)[kind], "-o", out)
    assert r.returncode == 0, r.stderr
    printed = r.stdout.split()
    assert printed and printed[0] == str(out / (kind + ".png"))
    for p in printed:
        assert os.path.getsize(p) > 0
    assert_png(printed[0])


def test_sweep_table_contents(run, tmp_path):
    sweep = make_sweep(run, tmp_path / "sweep")
    png, md, csv_path = plots.sweep_table(sweep, tmp_path / "t")
    assert_png(png)
    with open(csv_path) as f:
        table = list(csv.DictReader(f))
    # one row per task, set and checkpoint kind (raw, LAWA k=2), at the last step
    evals = fa.read_eval(run["eval"])
    kinds = {"raw" if os.path.basename(r["checkpoint"]).startswith("step_") else "LAWA k=2" for r in evals}
    assert len(table) == 3 * len({r["set"] for r in evals}) * len(kinds)
    assert {r["checkpoint"] for r in table} == kinds
    raw = [r for r in table if r["checkpoint"] == "raw"]
    assert [float(r["optim.lr"]) for r in raw] == [1e-3, 3e-3, 1e-2]
    assert all(int(r["step"]) == 20 for r in table)
    losses = [float(r["loss"]) for r in raw]
    assert losses[1] > losses[0] and losses[2] > losses[1]
    assert losses[0] == pytest.approx(next(r["loss"] for r in evals if r["checkpoint"].endswith("step_00000020.h5")))
    text = Path(md).read_text().splitlines()
    assert text[0].startswith("| task | optim.lr |") and len(text) == 2 + len(table)
    # the same table from a slurm/collect.py-style CSV
    collect_csv = tmp_path / "collect.csv"
    with open(collect_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "optim.lr", "run_dir", "checkpoint", "step", "set", "loss"])
        for i, lr in enumerate([1e-3, 3e-3, 1e-2]):
            for step in (10, 20):
                w.writerow([i, lr, "task_{}".format(i), "step_{:08d}.h5".format(step), step, "val", 4 - i + step / 100])
    png2, _, csv2 = plots.sweep_table(collect_csv, tmp_path / "t2")
    assert_png(png2)
    with open(csv2) as f:
        rows2 = list(csv.DictReader(f))
    assert [float(r["loss"]) for r in rows2] == pytest.approx([4.2, 3.2, 2.2])


def test_weights_plot_from_handmade_scores(handmade_scores, tmp_path):
    assert_png(plots.plot_weights(handmade_scores, tmp_path / "w.png"))


def test_lawa_without_eval_rows_is_a_clear_error(run, tmp_path):
    avg = need(run, "averaged")
    with pytest.raises(fa.FlowlmFormatError, match="flowlm eval"):
        plots.plot_lawa(run["run"], avg, tmp_path / "x.png", eval_paths=[])


# ---- bad input (no binary needed) --------------------------------------------------------------


def test_missing_files_name_the_path(tmp_path):
    missing = tmp_path / "missing_ckpt.h5"
    for fn in (fa.load_checkpoint, fa.read_scores, fa.read_eval, fa.read_metrics):
        with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
            fn(missing)


def test_not_hdf5_is_a_clear_error(tmp_path):
    bogus = tmp_path / "step_00000001.h5"
    bogus.write_text("not an HDF5 file\n")
    for fn in (fa.load_checkpoint, fa.read_scores):
        with pytest.raises(fa.FlowlmFormatError, match=re.escape(str(bogus)) + ".*not an HDF5 file"):
            fn(bogus)
    with pytest.raises(fa.FlowlmFormatError, match="is a directory"):
        fa.load_checkpoint(tmp_path)


def test_hdf5_that_is_not_a_checkpoint(tmp_path, handmade_scores):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(fa.FlowlmFormatError, match=re.escape(str(plain)) + ".*format_version"):
        fa.load_checkpoint(plain)
    with pytest.raises(fa.FlowlmFormatError, match=re.escape(str(handmade_scores)) + ".*not a flowlm checkpoint"):
        fa.load_checkpoint(handmade_scores)
    newer = tmp_path / "newer.h5"
    with h5py.File(newer, "w") as f:
        f.attrs["format_version"] = np.int64(fa.CHECKPOINT_FORMAT_VERSION + 1)
        f.attrs["step"] = np.int64(1)
        f.create_group("model")
    with pytest.raises(fa.FlowlmFormatError, match="newer"):
        fa.load_checkpoint(newer)
    with pytest.raises(fa.FlowlmFormatError, match=re.escape(str(plain)) + ".*no dataset 'loss'"):
        fa.read_scores(plain)
    short = tmp_path / "short.h5"
    with h5py.File(short, "w") as f:
        f["loss"] = np.zeros(4)
        f["weight"] = np.zeros(3)
    with pytest.raises(fa.FlowlmFormatError, match=re.escape(str(short)) + ".*must match"):
        fa.read_scores(short)


def test_checkpoint_is_not_a_scores_file(run):
    path = run["run"] / "step_00000010.h5"
    with pytest.raises(fa.FlowlmFormatError, match=re.escape(str(path)) + ".*not a scores file"):
        fa.read_scores(path)


def test_bad_jsonl_names_file_and_line(tmp_path):
    bad = tmp_path / "metrics.jsonl"
    bad.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": \n')
    with pytest.raises(fa.FlowlmFormatError, match=re.escape(str(bad)) + ":2"):
        fa.read_metrics(tmp_path)
    bad.write_text('{"loss": 2.0}\n')
    with pytest.raises(fa.FlowlmFormatError, match="step"):
        fa.read_metrics(bad)
    arr = tmp_path / "eval.jsonl"
    arr.write_text("[1, 2]\n")
    with pytest.raises(fa.FlowlmFormatError, match=re.escape(str(arr)) + ":1"):
        fa.read_eval(arr)


def test_metrics_keep_the_latest_row_per_step(tmp_path):
    # A resumed run appends steps again; the later row wins and the order is by step.
    rows = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}, {"step": 2, "loss": 2.4, "val_loss": 2.6},
            {"step": 3, "loss": 2.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = fa.read_metrics(tmp_path)
    assert list(m["step"]) == [1, 2, 3]
    assert list(m["loss"]) == [3.0, 2.4, 2.0]
    assert np.isnan(m["val_loss"][0]) and m["val_loss"][1] == 2.6


def test_cli_bad_input_exits_1_naming_the_file(tmp_path):
    missing = tmp_path / "nope_scores.h5"
    r = run_plot("weights", missing, "-o", tmp_path)
    assert r.returncode == 1
    assert str(missing) in r.stderr and "Traceback" not in r.stderr
    r = run_plot("sweep", tmp_path, "-o", tmp_path)
    assert r.returncode == 1 and "tasks.json" in r.stderr
    r = run_plot("nosuchkind")
    assert r.returncode == 2
