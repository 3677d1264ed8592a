#!/usr/bin/env python3
"""Run a grid sweep of one flowlm stage as a single Slurm job array.

    slurm/sweep.py submit sweep.toml [--max-parallel N] [--dry-run] [--account A] [--partition P]
                                     [--dir DIR] [--set key=value]...
    slurm/sweep.py status <sweep_dir | sweep.toml>

A sweep file:

    [sweep]
    name = "lr_tau"
    stage = "train"
    job = "jobs/flow_finetune.toml"
    dir = "runs/sweeps/lr_tau"     # task i writes to <dir>/task_<i>; tasks.json, jobs.json, logs/ here
    set = ["train.max_steps=2000"] # overrides every task gets (before its axes)
    run_dir_key = "run.dir"        # the key that receives the task's run directory (default)
    max_parallel = 4               # array throttle %N (--max-parallel wins)
    [sweep.sbatch]                 # sbatch options of every task
    time = "04:00:00"
    [axes]                         # the grid is the cartesian product, last axis fastest
    "flow.tau" = ["median", 0.5, 1.0]
    "optim.lr" = [1e-4, 3e-4]
    seed = [1, 2]                  # short for run.seed

Each array task reads its argument list from <dir>/tasks.json by SLURM_ARRAY_TASK_ID and
writes <run dir>/DONE when it succeeds. Submitting again leaves out finished tasks (DONE, or
the final checkpoint step_<train.max_steps>.h5 when the task sets train.max_steps); train
tasks always pass train.resume=true, so an unfinished task continues from its checkpoints.
"""

import datetime
import itertools
import json
import os
import sys

import common
from common import UsageError

ALIASES = {"seed": "run.seed"}


def load_sweep(path):
    doc = common.load_toml(path)
    bad = set(doc) - {"sweep", "axes"}
    if bad:
        raise UsageError("{}: unknown table(s) {} (expected sweep, axes)".format(path, ", ".join(sorted(bad))))
    sw = doc.get("sweep")
    if not isinstance(sw, dict):
        raise UsageError("{}: missing [sweep] table".format(path))
    bad = set(sw) - {"name", "stage", "job", "dir", "set", "run_dir_key", "max_parallel", "sbatch"}
    if bad:
        raise UsageError("{}: [sweep] has unknown key(s) {}".format(path, ", ".join(sorted(bad))))
    for key in ("stage", "job", "dir"):
        if not isinstance(sw.get(key), str) or not sw[key]:
            raise UsageError("{}: [sweep] needs {} = \"...\"".format(path, key))
    axes = {}
    for key, values in doc.get("axes", {}).items():
        if not isinstance(values, list) or not values:
            raise UsageError("{}: axis '{}' must be a non-empty list of values, got {!r}".format(path, key, values))
        if "." not in ALIASES.get(key, key):
            raise UsageError("{}: axis '{}' is not a section.key name (or 'seed')".format(path, key))
        axes[ALIASES.get(key, key)] = values
    if not axes:
        raise UsageError("{}: [axes] is empty: list at least one key = [values]".format(path))
    return sw, axes


def expand(sw, axes):
    """The grid: one dict of overrides per task, last axis fastest."""
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]


def build_tasks(path, sw, axes):
    sweep_dir = os.path.abspath(sw["dir"])
    job = os.path.abspath(sw["job"])
    run_key = sw.get("run_dir_key", "run.dir")
    grid = expand(sw, axes)
    width = max(4, len(str(len(grid) - 1)))
    tasks = {}
    for i, over in enumerate(grid):
        run_dir = os.path.join(sweep_dir, "task_{:0{}d}".format(i, width))
        argv = [sw["stage"], job]
        for kv in sw.get("set", []):
            argv += ["--set", kv]
        for k, v in over.items():
            argv += ["--set", "{}={}".format(k, common.format_value(v))]
        argv += ["--set", "{}={}".format(run_key, run_dir)]
        if sw["stage"] == "train":
            argv += ["--set", "train.resume=true"]
        tasks[str(i)] = {"overrides": over, "run_dir": run_dir, "done_file": os.path.join(run_dir, "DONE"),
                         "argv": argv}
    return {"sweep": sw.get("name") or os.path.splitext(os.path.basename(path))[0], "file": os.path.abspath(path),
            "stage": sw["stage"], "job": job, "dir": sweep_dir, "axes": axes, "set": sw.get("set", []),
            "tasks": tasks}


def final_step(task):
    """train.max_steps when the task's own overrides fix it (then its last checkpoint proves it done)."""
    steps = None
    argv = task["argv"]
    for a, b in zip(argv, argv[1:]):
        if a == "--set" and b.startswith("train.max_steps="):
            steps = b.split("=", 1)[1]
    return int(steps) if steps and steps.isdigit() else None


def is_done(task):
    if os.path.exists(task["done_file"]):
        return True
    n = final_step(task)
    return n is not None and os.path.exists(os.path.join(task["run_dir"], "step_{:08d}.h5".format(n)))


def compress(ids):
    """[0,1,2,5,7,8] -> "0-2,5,7-8" (sbatch --array syntax)."""
    parts, ids = [], sorted(ids)
    start = prev = ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else "{}-{}".format(start, prev))
        start = prev = i
    return ",".join(parts)


def cmd_submit(args):
    sw, axes = load_sweep(args.sweep)
    if args.dir:
        sw["dir"] = args.dir
    sw["set"] = list(sw.get("set", [])) + args.set
    data = build_tasks(args.sweep, sw, axes)
    tasks_path = os.path.join(data["dir"], "tasks.json")
    if os.path.exists(tasks_path) and not args.force:
        with open(tasks_path) as f:
            old = json.load(f)
        if {k: t["argv"] for k, t in old.get("tasks", {}).items()} != {k: t["argv"] for k, t in data["tasks"].items()}:
            raise UsageError("{} was written for a different grid or job; use a new [sweep] dir, or --force to "
                             "overwrite it (existing task dirs with a DONE marker still count as finished)".format(tasks_path))
    todo = [int(i) for i, t in data["tasks"].items() if not is_done(t)]
    total = len(data["tasks"])
    if not todo:
        print("sweep {}: all {} tasks are done; nothing to submit".format(data["sweep"], total))
        return 0
    max_parallel = args.max_parallel if args.max_parallel is not None else sw.get("max_parallel")
    array = compress(todo)
    if max_parallel is not None:
        if int(max_parallel) < 1:
            raise UsageError("--max-parallel {}: must be at least 1".format(max_parallel))
        array += "%{}".format(int(max_parallel))
    log_dir = os.path.join(data["dir"], "logs")
    cmd = ["--job-name=" + data["sweep"], "--array=" + array, "--output={}/task_%a.out".format(log_dir)]
    cmd += common.sbatch_options(sw.get("sbatch", {}), args.sweep + ": [sweep.sbatch]")
    cmd += common.cli_sbatch_options(args)
    cmd += [args.template, "--tasks", tasks_path]
    if args.dry_run:
        print("# {} of {} tasks to run: {}".format(len(todo), total, array))
        common.sbatch(cmd, None, True)
        return 0
    os.makedirs(log_dir, exist_ok=True)
    common.write_json(tasks_path, data)
    job_id = common.sbatch(cmd, common.submit_env(args), False)
    jobs_path = os.path.join(data["dir"], "jobs.json")
    history = []
    if os.path.exists(jobs_path):
        with open(jobs_path) as f:
            history = json.load(f).get("submissions", [])
    history.append({"job_id": job_id, "array": array, "tasks": todo,
                    "submitted": datetime.datetime.now().isoformat(timespec="seconds")})
    common.write_json(jobs_path, {"sweep": data["sweep"], "submissions": history})
    print("sweep {}: submitted array job {} with {} of {} tasks ({}); tasks in {}".format(
        data["sweep"], job_id, len(todo), total, array, tasks_path))
    return 0


def cmd_status(args):
    path = args.target
    if os.path.isdir(path):
        with open(os.path.join(path, "tasks.json")) as f:
            data = json.load(f)
    else:
        sw, axes = load_sweep(path)
        data = build_tasks(path, sw, axes)
    done = 0
    for i, t in data["tasks"].items():
        d = is_done(t)
        done += d
        over = " ".join("{}={}".format(k, common.format_value(v)) for k, v in t["overrides"].items())
        print("{:>5} {:<8} {}".format(i, "done" if d else "todo", over))
    print("{} of {} tasks done".format(done, len(data["tasks"])))
    return 0


def main(argv=None):
    p = common.parser("sweep.py", __doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("submit", help="expand the grid and submit the unfinished tasks as one job array")
    s.add_argument("sweep", help="sweep file (TOML)")
    s.add_argument("--max-parallel", type=int, metavar="N", help="run at most N tasks at once (--array=...%%N)")
    s.add_argument("--force", action="store_true", help="overwrite a tasks.json written for another grid")
    s.add_argument("--dir", help="sweep directory, overriding [sweep] dir")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="one more override for every task, after [sweep] set (repeatable)")
    common.add_sbatch_arguments(s)
    s.set_defaults(fn=cmd_submit)
    st = sub.add_parser("status", help="list the tasks and whether each is done")
    st.add_argument("target", help="sweep dir (with tasks.json) or sweep file")
    st.set_defaults(fn=cmd_status)
    args = p.parse_args(argv)
    return common.main_wrapper("sweep.py", lambda: args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
