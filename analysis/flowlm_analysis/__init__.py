"""Readers for flowlm's outputs, for plots and users' own notebooks.

    from flowlm_analysis import load_checkpoint, list_checkpoints, read_metrics, layer_distances
    ck = load_checkpoint("runs/tiny/step_00000060.h5")
    ck["transformer.wte.weight"].shape, ck.step, ck.config["model"]["n_layer"]

Formats (README.md, DESIGN.md): checkpoints `step_NNNNNNNN.h5` with /model/<name> and AdamW
moments (/optim/m.<name>, or nested /optim/m/<name>; load_checkpoint(p, "optim/m") reads
either) as fp32 datasets, and root attrs; `metrics.jsonl` and `eval.jsonl` (one JSON
object per line); `scores.h5` from `flowlm score` (datasets loss, weight, n_tokens). Every error
names the file it is about.
"""

import dataclasses
import json
import math
import os
import re
import tomllib

import h5py
import numpy as np

__all__ = [
    "FlowlmFormatError",
    "Checkpoint",
    "CheckpointInfo",
    "Scores",
    "CHECKPOINT_FORMAT_VERSION",
    "load_checkpoint",
    "list_checkpoints",
    "read_jsonl",
    "read_metrics",
    "read_scores",
    "read_eval",
    "numeric_columns",
    "layer_key",
    "layer_distances",
]

#: The newest checkpoint format_version these readers understand.
CHECKPOINT_FORMAT_VERSION = 1

# Root attrs that `flowlm average` stores as JSON list strings.
_JSON_ATTRS = ("sources", "source_steps", "weights")


class FlowlmFormatError(ValueError):
    """A file exists but is not the flowlm file it should be (the message names it)."""


def _require_file(path, what):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError("{}: no such {} (check the path)".format(path, what))
    if os.path.isdir(path):
        raise FlowlmFormatError("{}: is a directory, expected a {}".format(path, what))
    return path


def _open_h5(path, what):
    path = _require_file(path, what)
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise FlowlmFormatError("{}: not an HDF5 file, so not a {} ({})".format(path, what, e)) from None


def _decode(value):
    """HDF5 attribute -> plain Python: str, int, float or list."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return [_decode(v) for v in value.tolist()]
        if value.ndim == 0:
            return value.item()
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode_attrs(attrs, path):
    out = {k: _decode(v) for k, v in attrs.items()}
    for key in _JSON_ATTRS:
        if isinstance(out.get(key), str):
            try:
                out[key] = json.loads(out[key])
            except json.JSONDecodeError:
                raise FlowlmFormatError("{}: attribute '{}' is not a JSON list: {!r}".format(
                    path, key, out[key][:80])) from None
    return out


class Checkpoint(dict):
    """One checkpoint group's tensors (name -> numpy array) plus the file's root attributes.

    Names are relative to the group: "transformer.h.0.attn.c_attn.weight" for "model",
    "m/transformer.wte.weight" for "optim". `.attrs` holds decoded attributes (str, int,
    float, lists; average's sources/source_steps/weights decoded from JSON).
    """

    def __init__(self, tensors, attrs, path, group):
        super().__init__(tensors)
        self.attrs = attrs
        self.path = path
        self.group = group

    @property
    def step(self):
        """The training step (int)."""
        return int(self.attrs["step"])

    @property
    def kind(self):
        """"train" for training checkpoints unless the file says otherwise ("average", "ema", ...)."""
        return self.attrs.get("kind", "train")

    @property
    def config(self):
        """The resolved job (config_toml) as a dict; {} when the file has none."""
        text = self.attrs.get("config_toml", "")
        if not text:
            return {}
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise FlowlmFormatError("{}: attribute config_toml is not valid TOML ({})".format(self.path, e)) from None

    def shapes(self):
        """name -> shape tuple."""
        return {k: tuple(v.shape) for k, v in self.items()}

    def __repr__(self):
        return "Checkpoint({!r}, group={!r}, step={}, {} tensors)".format(self.path, self.group,
                                                                       self.attrs.get("step"), len(self))


def _check_checkpoint(f, path):
    if "format_version" not in f.attrs:
        raise FlowlmFormatError("{}: not a flowlm checkpoint (no root attribute 'format_version')".format(path))
    version = int(_decode(f.attrs["format_version"]))
    if version > CHECKPOINT_FORMAT_VERSION:
        raise FlowlmFormatError("{}: format_version {} is newer than this reader's {}; update flowlm_analysis".format(
            path, version, CHECKPOINT_FORMAT_VERSION))
    for key in ("step",):
        if key not in f.attrs:
            raise FlowlmFormatError("{}: not a flowlm checkpoint (no root attribute '{}')".format(path, key))
    if "model" not in f or not isinstance(f["model"], h5py.Group):
        raise FlowlmFormatError("{}: not a flowlm checkpoint (no /model group)".format(path))


def _datasets(group):
    """(relative name, dataset) of every dataset under `group`, in name order."""
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found.append((name, obj))

    group.visititems(visit)
    return found


def load_checkpoint(path, group="model", names=None):
    """Opens a flowlm checkpoint: tensors of `group` ("model", "optim", "optim/m", ...) as numpy
    arrays, with root attributes. `names` (an iterable) loads only those tensors.

    FileNotFoundError for a missing file, FlowlmFormatError for anything that is not a flowlm
    checkpoint (the message names the file), KeyError naming the file for a missing group/tensor.
    """
    path = os.fspath(path)
    with _open_h5(path, "flowlm checkpoint") as f:
        _check_checkpoint(f, path)
        attrs = _decode_attrs(f.attrs, path)
        group = group.strip("/")
        prefix = ""
        if group not in f and "/" in group:
            # Moments may be stored flat ("/optim/m.<name>") rather than nested ("/optim/m/<name>").
            parent, _, prefix = group.rpartition("/")
            prefix += "."
            if parent not in f:
                prefix = ""
            group = parent if prefix else group
        if group not in f or not isinstance(f[group], h5py.Group):
            raise KeyError("{}: no group '/{}' (groups: {})".format(path, group, ", ".join(sorted(f.keys()))))
        wanted = None if names is None else set(names)
        tensors = {}
        for name, ds in _datasets(f[group]):
            if prefix:
                if not name.startswith(prefix):
                    continue
                name = name[len(prefix):]
            if wanted is None or name in wanted:
                tensors[name] = ds[...]
        if prefix and not tensors and wanted is None:
            raise KeyError("{}: no tensors '/{}/{}*'".format(path, group, prefix))
        group = group + "/" + prefix[:-1] if prefix else group
        if wanted is not None and wanted - tensors.keys():
            missing = sorted(wanted - tensors.keys())
            raise KeyError("{}: no tensor(s) {} under /{}".format(path, ", ".join(missing), group))
    return Checkpoint(tensors, attrs, path, group)


@dataclasses.dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint file found in a directory."""

    step: int
    path: str


def list_checkpoints(run_dir, prefix="step_"):
    """Checkpoints `<prefix><digits>.h5` in `run_dir`, sorted by step (a list of CheckpointInfo).

    prefix="step_" (default) lists training checkpoints; e.g. "lawa_k5_step_" or "ema_step_"
    picks averaged or EMA files; prefix=None lists every `*step_<digits>.h5`. `*.tmp` files are
    ignored. FileNotFoundError when `run_dir` does not exist.
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise FileNotFoundError("{}: no such run directory".format(run_dir))
    pat = re.compile(r"^.*step_(\d+)\.h5$" if prefix is None else r"^" + re.escape(prefix) + r"(\d+)\.h5$")
    found = []
    for name in os.listdir(run_dir):
        m = pat.match(name)
        if m:
            found.append(CheckpointInfo(int(m.group(1)), os.path.join(run_dir, name)))
    found.sort(key=lambda c: (c.step, c.path))
    return found


def read_jsonl(path):
    """Rows (dicts) of a JSON-lines file; blank lines skipped. Errors name the file and line."""
    path = _require_file(path, "JSON-lines file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise FlowlmFormatError("{}:{}: not JSON ({})".format(path, n, e)) from None
            if not isinstance(row, dict):
                raise FlowlmFormatError("{}:{}: expected one JSON object per line".format(path, n))
            rows.append(row)
    return rows


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def numeric_columns(rows):
    """Column name -> float array (NaN where a row lacks it) for every key that is numeric in
    at least one row, in first-seen order."""
    keys = []
    for r in rows:
        for k, v in r.items():
            if k not in keys and _is_number(v):
                keys.append(k)
    return {k: np.array([float(r[k]) if _is_number(r.get(k)) else math.nan for r in rows]) for k in keys}


def read_metrics(run_dir_or_file):
    """`metrics.jsonl` of a run (a run dir or the file itself) as columns: name -> float array,
    sorted by step, NaN where a row lacks the key (e.g. val_loss on steps without validation).
    Rows repeated by a resumed run keep the latest occurrence of each step."""
    path = os.fspath(run_dir_or_file)
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    rows = read_jsonl(path)
    if not rows:
        raise FlowlmFormatError("{}: no rows".format(path))
    if any(not _is_number(r.get("step")) for r in rows):
        raise FlowlmFormatError("{}: every row needs a numeric 'step'".format(path))
    latest = {}
    for r in rows:
        latest[int(r["step"])] = r
    rows = [latest[s] for s in sorted(latest)]
    return numeric_columns(rows)


@dataclasses.dataclass
class Scores:
    """`scores.h5`: per-sample pre-trained loss, FLOW weight and answer token count."""

    path: str
    loss: np.ndarray
    weight: np.ndarray
    n_tokens: np.ndarray
    attrs: dict

    @property
    def tau(self):
        """The temperature (float), or None when the file does not record it."""
        v = self.attrs.get("tau")
        return None if v is None else float(v)

    @property
    def normalization(self):
        """"mean", "none", ... or None when not recorded."""
        return self.attrs.get("normalization")

    def __len__(self):
        return len(self.loss)


def read_scores(path):
    """Reads a scores file (`flowlm score`). Optional attrs may be missing (Scores.tau -> None);
    n_tokens defaults to NaN when absent. FlowlmFormatError naming the file when loss/weight
    are missing or their lengths differ."""
    path = os.fspath(path)
    with _open_h5(path, "scores file") as f:
        kind = _decode(f.attrs.get("kind", "scores"))
        if kind != "scores":
            raise FlowlmFormatError(
                "{}: not a scores file (attribute kind = {!r}); write one with `flowlm score`".format(path, kind))
        for name in ("loss", "weight"):
            if name not in f or not isinstance(f[name], h5py.Dataset):
                raise FlowlmFormatError("{}: not a scores file (no dataset '{}'); write one with `flowlm score`".format(
                    path, name))
        loss = np.asarray(f["loss"][...], dtype=np.float64).reshape(-1)
        weight = np.asarray(f["weight"][...], dtype=np.float64).reshape(-1)
        if "n_tokens" in f:
            n_tokens = np.asarray(f["n_tokens"][...]).reshape(-1)
        else:
            n_tokens = np.full(len(loss), math.nan)
        attrs = _decode_attrs(f.attrs, path)
    if not (len(loss) == len(weight) == len(n_tokens)):
        raise FlowlmFormatError("{}: datasets loss/weight/n_tokens have {}/{}/{} rows; they must match".format(
            path, len(loss), len(weight), len(n_tokens)))
    return Scores(path, loss, weight, n_tokens, attrs)


def read_eval(path):
    """Rows (dicts) of an `eval.jsonl` (one per checkpoint x eval set). Tolerant of extra or
    missing keys: use numeric_columns(rows) for the numbers. A row without 'step' gets it from
    a `step_<digits>` in its checkpoint name when there is one."""
    rows = read_jsonl(path)
    for r in rows:
        if "step" not in r and isinstance(r.get("checkpoint"), str):
            m = re.search(r"step_(\d+)", os.path.basename(r["checkpoint"]))
            if m:
                r["step"] = int(m.group(1))
    return rows


_BLOCK = re.compile(r"(?:^|\.)(?:h|layers|blocks)\.(\d+)\.")


def layer_key(name):
    """Which layer a tensor belongs to: its block index (int) for "transformer.h.<i>.*", else a
    short name ("wte", "wpe", "ln_f", ...)."""
    m = _BLOCK.search(name)
    if m:
        return int(m.group(1))
    parts = [p for p in name.split(".") if p not in ("transformer", "model", "weight", "bias")]
    return ".".join(parts) if parts else name


def _sort_keys(keys):
    """Embeddings first, blocks by index, then the rest (final norm, head) in name order."""
    emb = [k for k in ("wte", "wpe", "embed_tokens") if k in keys]
    blocks = sorted(k for k in keys if isinstance(k, int))
    rest = sorted(k for k in keys if isinstance(k, str) and k not in emb)
    return emb + blocks + rest


class _Source:
    """Tensors of a Checkpoint or of a checkpoint path (read one at a time, so a large model
    never has to fit twice in memory)."""

    def __init__(self, ck, group):
        self.ck = ck if isinstance(ck, Checkpoint) else None
        self.file = None
        if self.ck is None:
            self.path = os.fspath(ck)
            self.file = _open_h5(self.path, "flowlm checkpoint")
            try:
                _check_checkpoint(self.file, self.path)
            except Exception:
                self.file.close()
                raise
            self.names = [n for n, _ in _datasets(self.file[group])]
            self.group = self.file[group]
        else:
            self.path = ck.path
            self.names = sorted(ck.keys())

    def get(self, name):
        return self.ck[name] if self.ck is not None else self.group[name][...]

    def close(self):
        if self.file is not None:
            self.file.close()


def layer_distances(ckpt_a, ckpt_b, relative=False):
    """L2 distance per layer between two checkpoints (Checkpoint objects or paths) of the same
    architecture: {block index (int) or name ("wte", "wpe", "ln_f"): sqrt(sum of squared
    differences over the layer's tensors)}, ordered embeddings, blocks, rest. relative=True
    divides each by the layer's norm in ckpt_a. FlowlmFormatError naming both files when the
    tensor names or shapes differ."""
    a = _Source(ckpt_a, "model")
    try:
        b = _Source(ckpt_b, "model")
    except Exception:
        a.close()
        raise
    try:
        if sorted(a.names) != sorted(b.names):
            only = sorted(set(a.names) ^ set(b.names))
            raise FlowlmFormatError("{} and {}: different tensors (first unmatched: {}); compare checkpoints of one "
                                    "architecture".format(a.path, b.path, only[0]))
        sq, ref = {}, {}
        for name in a.names:
            x = np.asarray(a.get(name), dtype=np.float64)
            y = np.asarray(b.get(name), dtype=np.float64)
            if x.shape != y.shape:
                raise FlowlmFormatError("{} and {}: tensor {} has shape {} vs {}".format(a.path, b.path, name, x.shape,
                                                                                         y.shape))
            k = layer_key(name)
            sq[k] = sq.get(k, 0.0) + float(np.sum((x - y) ** 2))
            ref[k] = ref.get(k, 0.0) + float(np.sum(x * x))
    finally:
        a.close()
        b.close()
    out = {}
    for k in _sort_keys(sq.keys()):
        d = math.sqrt(sq[k])
        out[k] = d / math.sqrt(ref[k]) if relative and ref[k] > 0 else d
    return out
