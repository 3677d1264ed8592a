"""Plots and tables from flowlm runs (matplotlib, Agg backend: no display needed).

Every plot_* function writes one PNG and returns its path; sweep_table also writes a CSV and
a markdown table. The CLI is analysis/plot.py.
"""

import csv
import json
import math
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from . import (FlowlmFormatError, layer_distances, list_checkpoints, load_checkpoint, numeric_columns,  # noqa: E402
               read_eval, read_metrics, read_scores)

# Preferred metric columns of eval.jsonl, best first; other numeric columns follow.
_METRICS = ("loss", "answer_loss", "accuracy")
# Bookkeeping columns that are numbers but not results.
_NOT_METRICS = {"step", "task", "tokens", "samples", "answer_tokens", "tokens_seen", "tokens_per_s"}


def _label(path):
    """A short name for a run dir or file: its last path component."""
    return os.path.basename(os.path.normpath(os.fspath(path))) or os.fspath(path)


def _labels(paths, labels):
    if labels is None:
        return [_label(p) for p in paths]
    if len(labels) != len(paths):
        raise ValueError("{} labels for {} inputs; give one label per input".format(len(labels), len(paths)))
    return list(labels)


def _save(fig, out):
    for ax in fig.axes:
        if ax.get_xlabel().startswith("step"):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    out = os.fspath(out)
    parent = os.path.dirname(out)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _smooth(y, window):
    """Trailing moving average, same length as y (the first points average what exists)."""
    if window <= 1 or len(y) < 2:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    n = np.arange(1, len(y) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


def plot_loss(run_dirs, out, labels=None, smooth=0):
    """Training loss (and val_loss where logged) against step, one colour per run."""
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise ValueError("plot_loss: give at least one run dir")
    names = _labels(run_dirs, labels)
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, (run, name) in enumerate(zip(run_dirs, names)):
        m = read_metrics(run)
        color = "C{}".format(i % 10)
        if "loss" in m:
            y = m["loss"]
            if smooth > 1:
                ax.plot(m["step"], y, color=color, alpha=0.25, linewidth=0.8)
                y = _smooth(y, smooth)
            ax.plot(m["step"], y, color=color, label="{} train".format(name))
        if "val_loss" in m:
            ok = ~np.isnan(m["val_loss"])
            if ok.any():
                ax.plot(m["step"][ok], m["val_loss"][ok], color=color, linestyle="--", marker="o", markersize=4,
                        label="{} val".format(name))
    ax.set_title("Loss curves")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out)


def drift_series(pretrained, run_dir, relative=False):
    """(steps, {layer: [distance at each step]}) of a run's checkpoints from the pre-trained ones."""
    base = pretrained if hasattr(pretrained, "attrs") else load_checkpoint(pretrained)
    ckpts = list_checkpoints(run_dir)
    if not ckpts:
        raise FlowlmFormatError("{}: no step_*.h5 checkpoints to compare with {}".format(run_dir, base.path))
    steps, series = [], {}
    for c in ckpts:
        d = layer_distances(base, c.path, relative=relative)
        steps.append(c.step)
        for k, v in d.items():
            series.setdefault(k, []).append(v)
    return steps, series


def _layer_name(k):
    return "block {}".format(k) if isinstance(k, int) else k


def plot_drift(pretrained, run_dirs, out, labels=None, relative=False):
    """Per-layer L2 distance from the pre-trained checkpoint across each run's checkpoints (one
    panel per run, shared y axis), plus the distances at each run's last checkpoint side by side."""
    run_dirs = list(run_dirs)
    if not run_dirs:
        raise ValueError("plot_drift: give at least one run dir (e.g. standard and flow)")
    names = _labels(run_dirs, labels)
    base = load_checkpoint(pretrained)
    data = [drift_series(base, r, relative) for r in run_dirs]
    layers = list(data[0][1].keys())
    cmap = plt.get_cmap("viridis")
    n = len(run_dirs)
    fig, axes = plt.subplots(1, n + 1, figsize=(4.5 * (n + 1), 4.5), squeeze=False)
    axes = axes[0]
    ylabel = "relative L2 distance" if relative else "L2 distance from pre-trained"
    ymax = max(max(max(v) for v in s.values()) for _, s in data) * 1.05 or 1.0
    for ax, name, (steps, series) in zip(axes, names, data):
        for j, k in enumerate(layers):
            ax.plot(steps, series[k], marker="o", markersize=3, color=cmap(j / max(len(layers) - 1, 1)),
                    label=_layer_name(k))
        ax.set_title("{}: per-layer drift".format(name))
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_ylim(0, ymax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small", ncol=2 if len(layers) > 8 else 1)
    ax = axes[n]
    x = np.arange(len(layers))
    width = 0.8 / n
    for i, (name, (steps, series)) in enumerate(zip(names, data)):
        ax.bar(x + (i - (n - 1) / 2) * width, [series[k][-1] for k in layers], width,
               label="{} (step {})".format(name, steps[-1]))
    ax.set_xticks(x)
    ax.set_xticklabels([str(k) for k in layers], rotation=45 if len(layers) > 8 else 0)
    ax.set_title("Drift at the last checkpoint")
    ax.set_xlabel("layer (block index or embedding / norm)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    fig.suptitle("Distance from {}".format(_label(pretrained)))
    return _save(fig, out)


def plot_weights(scores_path, out, bins=40):
    """FLOW weights of a scores.h5: histogram of the weights and weight against pre-trained loss,
    with the curve w = exp(-l / tau) (scaled by the normalisation) when tau is recorded."""
    s = read_scores(scores_path)
    if len(s) == 0:
        raise FlowlmFormatError("{}: no samples".format(s.path))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.hist(s.weight, bins=bins, color="C0", edgecolor="white")
    ax1.axvline(float(np.mean(s.weight)), color="C3", linestyle="--",
                label="mean {:.3g}".format(float(np.mean(s.weight))))
    ax1.set_title("FLOW weights ({} samples)".format(len(s)))
    ax1.set_xlabel("weight w_i")
    ax1.set_ylabel("samples")
    ax1.legend()
    ax1.grid(alpha=0.3, axis="y")
    ax2.scatter(s.loss, s.weight, s=10, alpha=0.6, color="C0", label="samples")
    tau = s.tau
    if tau is not None and tau > 0:
        scale = 1.0
        raw_mean = s.attrs.get("raw_mean_weight")
        if s.normalization == "mean" and raw_mean:
            scale = 1.0 / float(raw_mean)
        l = np.linspace(float(np.min(s.loss)), float(np.max(s.loss)), 200)
        ax2.plot(l, scale * np.exp(-l / tau), color="C3", label="exp(-l / tau), tau = {:.3g}".format(tau))
        ax2.axvline(tau, color="grey", linestyle=":", label="l = tau")
    ax2.set_title("Weight vs pre-trained loss" + (" (normalization: {})".format(s.normalization)
                                                  if s.normalization else ""))
    ax2.set_xlabel("per-sample loss l_i (answer tokens)")
    ax2.set_ylabel("weight w_i")
    ax2.grid(alpha=0.3)
    ax2.legend()
    step = s.attrs.get("checkpoint_step")
    fig.suptitle("{}{}".format(_label(s.path), " (checkpoint step {})".format(step) if step is not None else ""))
    return _save(fig, out)


def _checkpoint_kind(path):
    """"raw" for step_N.h5, else the name's prefix before "_step_" ("LAWA k=5", "ema", "swa")."""
    name = os.path.basename(str(path))
    if re.match(r"^step_\d+\.h5$", name):
        return "raw"
    m = re.match(r"^(.*?)_step_\d+\.h5$", name)
    kind = m.group(1) if m else os.path.splitext(name)[0]
    lawa = re.fullmatch(r"lawa_k(\d+)", kind)
    return "LAWA k={}".format(lawa.group(1)) if lawa else kind


def _metric_of(rows):
    cols = numeric_columns(rows)
    for k in _METRICS:
        if k in cols and not np.all(np.isnan(cols[k])):
            return k
    rest = [k for k in cols if k not in _NOT_METRICS]
    if not rest:
        raise FlowlmFormatError("no numeric result column (loss, answer_loss, accuracy, ...) in the eval rows")
    return rest[0]


def plot_lawa(raw_dir, avg_dir, out, eval_paths=None, metric=None):
    """Validation loss of the raw checkpoints vs their averages along the run.

    Values come from eval.jsonl files (`flowlm eval` over both raw and averaged checkpoints;
    default: raw_dir/eval.jsonl and avg_dir/eval.jsonl where they exist): each row is raw when its
    checkpoint is `step_N.h5`, else grouped by its name prefix (lawa_k5, ema, ...). The raw run's
    metrics.jsonl val_loss is drawn too when present."""
    if eval_paths is None:
        eval_paths = [p for p in (os.path.join(raw_dir, "eval.jsonl"), os.path.join(avg_dir, "eval.jsonl"))
                      if os.path.exists(p)]
    if not os.path.isdir(avg_dir):
        raise FileNotFoundError("{}: no such averaged-checkpoint directory".format(avg_dir))
    rows = []
    for p in eval_paths:
        rows += read_eval(p)
    rows = [r for r in rows if "checkpoint" in r and "step" in r]
    if not rows:
        raise FlowlmFormatError("no eval rows with checkpoint and step in {}; run `flowlm eval` on {} and {}".format(
            ", ".join(map(str, eval_paths)) or "(no eval.jsonl found)", raw_dir, avg_dir))
    metric = metric or _metric_of(rows)
    sets = sorted({str(r.get("set", "")) for r in rows})
    kinds = sorted({_checkpoint_kind(r["checkpoint"]) for r in rows}, key=lambda k: (k != "raw", k))
    fig, ax = plt.subplots(figsize=(8, 5))
    for si, st in enumerate(sets):
        for ki, kind in enumerate(kinds):
            pts = {}
            for r in rows:
                v = r.get(metric)
                if str(r.get("set", "")) == st and _checkpoint_kind(r["checkpoint"]) == kind and isinstance(
                        v, (int, float)):
                    pts[int(r["step"])] = float(v)
            if not pts:
                continue
            xs = sorted(pts)
            label = kind if len(sets) == 1 else "{} on {}".format(kind, _label(st))
            ax.plot(xs, [pts[x] for x in xs], color="C{}".format(si % 10), marker="o" if kind == "raw" else "s",
                    linestyle="-" if kind == "raw" else ["--", ":", "-."][ki % 3], markersize=4, label=label)
    try:
        m = read_metrics(raw_dir)
    except FileNotFoundError:
        m = {}
    if "val_loss" in m and metric == "loss":
        ok = ~np.isnan(m["val_loss"])
        if ok.any():
            ax.plot(m["step"][ok], m["val_loss"][ok], color="grey", alpha=0.6, linewidth=1,
                    label="raw val_loss (metrics.jsonl)")
    ax.set_title("LAWA vs raw: {} of {}".format(metric, _label(raw_dir)))
    ax.set_xlabel("step (window end for averages)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out)


def _number(v):
    """CSV cells back to numbers where they are numbers."""
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return v
        return int(f) if f.is_integer() and re.fullmatch(r"[-+]?\d+", v.strip()) else f
    return v


def read_sweep(path):
    """(axes, rows) of a sweep: a sweep dir (tasks.json + each task's eval.jsonl) or the CSV of
    slurm/collect.py (columns task, <axes>..., run_dir, <eval keys>...)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        tasks_path = os.path.join(path, "tasks.json")
        if not os.path.exists(tasks_path):
            raise FileNotFoundError("{}: not found (is {} a sweep dir written by slurm/sweep.py?)".format(
                tasks_path, path))
        try:
            with open(tasks_path) as f:
                data = json.load(f)
            tasks = data["tasks"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise FlowlmFormatError("{}: not a sweep tasks file ({})".format(tasks_path, e)) from None
        axes = list(data.get("axes", {}))
        rows = []
        for tid in sorted(tasks, key=int):
            t = tasks[tid]
            run_dir = t.get("run_dir", "")
            # run_dir is relative to where the sweep was submitted; fall back to the sweep dir.
            if not os.path.isdir(run_dir):
                run_dir = os.path.join(path, os.path.basename(os.path.normpath(run_dir)))
            ev = os.path.join(run_dir, "eval.jsonl")
            if not os.path.exists(ev):
                continue
            for r in read_eval(ev):
                row = {"task": int(tid)}
                row.update({a: t.get("overrides", {}).get(a) for a in axes})
                row.update({k: v for k, v in r.items() if k not in row})
                rows.append(row)
        if not rows:
            raise FlowlmFormatError("{}: no task has an eval.jsonl yet (run `flowlm eval` in each task)".format(path))
        return axes, rows
    if not os.path.exists(path):
        raise FileNotFoundError("{}: no such sweep dir or CSV file".format(path))
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        rows = [{k: _number(v) for k, v in r.items()} for r in reader]
    if "task" not in header or "run_dir" not in header:
        raise FlowlmFormatError("{}: not a slurm/collect.py CSV (needs columns 'task' and 'run_dir')".format(path))
    axes = header[header.index("task") + 1:header.index("run_dir")]
    if not rows:
        raise FlowlmFormatError("{}: no rows".format(path))
    return axes, rows


def sweep_summary(axes, rows):
    """One row per task, eval set and checkpoint kind (raw, LAWA k=5, ...): the row at the
    largest step (the final checkpoint). Returns (columns, rows, metric columns)."""
    best = {}
    for r in rows:
        kind = _checkpoint_kind(r["checkpoint"]) if isinstance(r.get("checkpoint"), str) else ""
        key = (r.get("task"), str(r.get("set", "")), kind)
        step = r.get("step") if isinstance(r.get("step"), (int, float)) else -math.inf
        if key not in best or step >= best[key][0]:
            best[key] = (step, dict(r, checkpoint=kind) if kind else r)
    order = sorted(best, key=lambda k: (k[0] if isinstance(k[0], (int, float)) else 0, k[1], k[2] != "raw", k[2]))
    out = [best[k][1] for k in order]
    metrics = [k for k in numeric_columns(out) if k not in _NOT_METRICS and k not in axes]
    ordered = [m for m in _METRICS if m in metrics] + [m for m in metrics if m not in _METRICS]
    present = [c for c in ("set", "checkpoint", "step") if any(c in r for r in out)]
    cols = ["task"] + list(axes) + present + ordered
    return cols, out, ordered


def _fmt(v):
    if isinstance(v, float):
        return "{:.4g}".format(v)
    if v is None:
        return ""
    return str(v)


def sweep_table(path, out_dir, name="sweep"):
    """Writes <out_dir>/<name>.csv and .md (one row per task and set, final step) and a PNG of
    the first metric against the first axis (one line per other-axis combination and set).
    Returns the three paths (png, md, csv)."""
    axes, rows = read_sweep(path)
    cols, summary, metrics = sweep_summary(axes, rows)
    if not metrics:
        raise FlowlmFormatError("{}: no numeric result columns in the sweep's eval rows".format(path))
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, name + ".csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in summary:
            w.writerow([r.get(c, "") for c in cols])
    md_path = os.path.join(out_dir, name + ".md")
    shown = [c for c in cols]
    with open(md_path, "w") as f:
        f.write("| " + " | ".join(shown) + " |\n")
        f.write("|" + "|".join("---:" if c in metrics or c in ("task", "step") else "---" for c in shown) + "|\n")
        for r in summary:
            f.write("| " + " | ".join(_md(_fmt(_short_set(r.get(c)) if c == "set" else r.get(c))) for c in shown) +
                    " |\n")

    metric = metrics[0]
    fig, ax = plt.subplots(figsize=(8, 5))
    x_axis = axes[0] if axes else "task"
    others = axes[1:]
    sets = sorted({_short_set(str(r.get("set"))) for r in summary if "set" in r})
    kinds = sorted({r.get("checkpoint") for r in summary if r.get("checkpoint")}, key=lambda k: (k != "raw", k))
    # Colour per combination of the other axes (and eval set); line style per checkpoint kind.
    groups = {}
    for r in summary:
        combo = tuple(r.get(a) for a in others) + ((_short_set(str(r.get("set"))),) if len(sets) > 1 else ())
        groups.setdefault(combo, {}).setdefault(r.get("checkpoint"), []).append(r)
    xs_all = [r.get(x_axis) for r in summary]
    numeric_x = all(isinstance(v, (int, float)) for v in xs_all)
    cats = sorted({_fmt(v) for v in xs_all}) if not numeric_x else None
    for i, (combo, by_kind) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        for kind, grp in by_kind.items():
            grp = sorted(grp, key=lambda r: r.get(x_axis) if numeric_x else _fmt(r.get(x_axis)))
            xs = [r.get(x_axis) for r in grp] if numeric_x else [cats.index(_fmt(r.get(x_axis))) for r in grp]
            ys = [r.get(metric) if isinstance(r.get(metric), (int, float)) else math.nan for r in grp]
            parts = ["{}={}".format(a, _fmt(v)) for a, v in zip(others, combo)] + [str(v) for v in combo[len(others):]]
            if len(kinds) > 1:
                parts.append(str(kind))
            style = "-" if kind in (None, "raw") else ["--", ":", "-."][kinds.index(kind) % 3]
            ax.plot(xs, ys, marker="o", linestyle=style, color="C{}".format(i % 10), label=", ".join(parts) or metric)
    if numeric_x:
        positive = [v for v in xs_all if v > 0]
        if len(positive) == len(xs_all) and max(positive) / min(positive) >= 10:
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels(cats)
    ax.set_title("Sweep {}: {} (final checkpoint)".format(_label(path), metric))
    ax.set_xlabel(x_axis)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    png = _save(fig, os.path.join(out_dir, name + ".png"))
    return png, md_path, csv_path


def _md(text):
    """Escapes what markdown would read as emphasis or a cell border."""
    return re.sub(r"([\\*_|`])", r"\\\1", text)


def _short_set(s):
    return _label(s) if isinstance(s, str) and s else s


__all__ = ["plot_loss", "plot_drift", "drift_series", "plot_weights", "plot_lawa", "read_sweep", "sweep_summary",
           "sweep_table"]
