#!/usr/bin/env python3
"""Submit a flowlm pipeline (a DAG of stages) as Slurm jobs chained with --dependency=afterok.

    slurm/pipeline.py submit slurm/pipelines/flow.toml [--var key=value]... [--account A] [--partition P]
    slurm/pipeline.py show   slurm/pipelines/flow.toml           # the steps in submission order

A pipeline file:

    [pipeline]
    name = "flow"
    run_dir = "runs/flow"          # jobs.json and logs/ go here; "${run_dir}" expands to it
    [vars]                         # more "${name}" substitutions (--var overrides them)
    job = "jobs/flow_finetune.toml"
    [sbatch]                       # sbatch defaults for every step (a step's table and the CLI win;
                                   # key = false in a step's table drops a default)
    time = "02:00:00"
    [[step]]
    name = "score"                 # unique; other steps name it in `after`
    stage = "score"                # the flowlm stage (any: the list is not fixed here)
    job = "${job}"                 # flowlm <stage> <job> --set ..., or `args = [...]` for raw arguments
    set = ["run.dir=${run_dir}/score"]
    after = []                     # steps that must finish OK first (afterok)
    sbatch = { gpus-per-node = 1 }

Prints "<step> <job id>" per step and writes <run_dir>/jobs.json.
"""

import datetime
import os
import string
import sys

import common
from common import UsageError


def substitute(text, mapping, where):
    try:
        return string.Template(text).substitute(mapping)
    except KeyError as e:
        raise UsageError("{}: unknown variable ${{{}}} (known: {})".format(
            where, e.args[0], ", ".join(sorted(mapping)))) from None
    except ValueError as e:
        raise UsageError("{}: bad '$' substitution in {!r}: {}".format(where, text, e)) from None


def load_pipeline(path, cli_vars):
    """Reads and checks a pipeline file; returns (meta, steps in submission order)."""
    doc = common.load_toml(path)
    unknown = set(doc) - {"pipeline", "vars", "sbatch", "step"}
    if unknown:
        raise UsageError("{}: unknown table(s) {} (expected pipeline, vars, sbatch, step)".format(
            path, ", ".join(sorted(unknown))))
    meta = doc.get("pipeline", {})
    name = meta.get("name") or os.path.splitext(os.path.basename(path))[0]
    mapping = {"name": name}
    for k, v in doc.get("vars", {}).items():
        mapping[k] = str(v)
    for kv in cli_vars:
        if "=" not in kv:
            raise UsageError("--var {}: expected key=value".format(kv))
        k, v = kv.split("=", 1)
        mapping[k.strip()] = v.strip()
    if "run_dir" not in meta and "run_dir" not in mapping:
        raise UsageError("{}: [pipeline] needs run_dir (where jobs.json and logs go)".format(path))
    run_dir = substitute(str(mapping.get("run_dir", meta.get("run_dir"))), mapping, path + ": run_dir")
    mapping["run_dir"] = run_dir
    for k in list(mapping):  # vars may refer to run_dir and to each other (one level)
        mapping[k] = substitute(mapping[k], mapping, "{}: vars.{}".format(path, k))

    raw = doc.get("step", [])
    if not raw:
        raise UsageError("{}: no [[step]] entries".format(path))
    steps, names = [], set()
    for i, s in enumerate(raw):
        where = "{}: step {}".format(path, s.get("name", "#" + str(i + 1)))
        bad = set(s) - {"name", "stage", "job", "set", "args", "after", "sbatch"}
        if bad:
            raise UsageError("{}: unknown key(s) {}".format(where, ", ".join(sorted(bad))))
        for key in ("name", "stage"):
            if not isinstance(s.get(key), str) or not s[key]:
                raise UsageError("{}: needs {} = \"...\"".format(where, key))
        if s["name"] in names:
            raise UsageError("{}: duplicate step name '{}'".format(where, s["name"]))
        names.add(s["name"])
        if ("job" in s) == ("args" in s):
            raise UsageError("{}: give exactly one of job = \"file.toml\" or args = [...]".format(where))
        after = s.get("after", [])
        if isinstance(after, str):
            after = [after]
        argv = [s["stage"]]
        if "job" in s:
            argv.append(substitute(s["job"], mapping, where + ": job"))
            for kv in s.get("set", []):
                argv += ["--set", substitute(kv, mapping, where + ": set")]
        else:
            if s.get("set"):
                raise UsageError("{}: `set` needs `job` (put --set into args instead)".format(where))
            argv += [substitute(str(a), mapping, where + ": args") for a in s["args"]]
        sb = {k: substitute(v, mapping, where) if isinstance(v, str) else v for k, v in s.get("sbatch", {}).items()}
        steps.append({"name": s["name"], "stage": s["stage"], "after": list(after), "argv": argv, "sbatch": sb,
                      "where": where + ": sbatch"})
    for s in steps:
        for dep in s["after"]:
            if dep not in names:
                raise UsageError("{}: step {} runs after unknown step '{}' (steps: {})".format(
                    path, s["name"], dep, ", ".join(sorted(names))))
    defaults = {k: substitute(v, mapping, path) if isinstance(v, str) else v
                for k, v in doc.get("sbatch", {}).items()}
    for s in steps:  # a step's table overrides the defaults; `key = false` drops a default
        s["sbatch"] = common.sbatch_options(dict(defaults, **s["sbatch"]), s.pop("where"))
    meta = {"name": name, "run_dir": run_dir, "file": os.path.abspath(path)}
    return meta, topo_order(steps, path)


def topo_order(steps, path):
    """Steps in file order where possible, each after everything it depends on; rejects cycles."""
    by_name = {s["name"]: s for s in steps}
    state, out = {}, []

    def visit(s, chain):
        if state.get(s["name"]) == "done":
            return
        if state.get(s["name"]) == "active":
            raise UsageError("{}: dependency cycle: {}".format(path, " -> ".join(chain + [s["name"]])))
        state[s["name"]] = "active"
        for dep in s["after"]:
            visit(by_name[dep], chain + [s["name"]])
        state[s["name"]] = "done"
        out.append(s)

    for s in steps:
        visit(s, [])
    return out


def cmd_submit(args):
    meta, steps = load_pipeline(args.pipeline, args.var)
    run_dir = meta["run_dir"]
    log_dir = os.path.join(run_dir, "logs")
    if not args.dry_run:
        os.makedirs(log_dir, exist_ok=True)
    env = common.submit_env(args)
    ids, record = {}, []
    for s in steps:
        cmd = ["--job-name={}-{}".format(meta["name"], s["name"]),
               "--output={}/{}-%j.out".format(log_dir, s["name"])]
        cmd += s["sbatch"] + common.cli_sbatch_options(args)
        dep = ""
        if s["after"]:
            dep = "afterok:" + ":".join(ids[d] or "<{}>".format(d) for d in s["after"])
            # A failed dependency cancels the step instead of leaving it pending forever.
            cmd += ["--dependency=" + dep, "--kill-on-invalid-dep=yes"]
        cmd += [args.template] + s["argv"]
        ids[s["name"]] = common.sbatch(cmd, env, args.dry_run)
        record.append({"name": s["name"], "stage": s["stage"], "job_id": ids[s["name"]], "after": s["after"],
                       "dependency": dep, "argv": s["argv"]})
        if not args.dry_run:
            print("{} {}".format(s["name"], ids[s["name"]]), flush=True)
    if args.dry_run:
        return 0
    path = os.path.join(run_dir, "jobs.json")
    common.write_json(path, {"pipeline": meta["name"], "file": meta["file"],
                             "submitted": datetime.datetime.now().isoformat(timespec="seconds"),
                             "run_dir": os.path.abspath(run_dir), "steps": record})
    print("wrote {}".format(path))
    return 0


def cmd_show(args):
    meta, steps = load_pipeline(args.pipeline, args.var)
    print("pipeline {} (run_dir {})".format(meta["name"], meta["run_dir"]))
    for s in steps:
        after = " after " + ",".join(s["after"]) if s["after"] else ""
        print("  {:<16} flowlm {}{}".format(s["name"], " ".join(s["argv"]), after))
    return 0


def main(argv=None):
    p = common.parser("pipeline.py", __doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("submit", help="submit every step, chained with --dependency=afterok")
    s.add_argument("pipeline", help="pipeline file (TOML)")
    s.add_argument("--var", action="append", default=[], metavar="KEY=VALUE", help="set a ${KEY} substitution")
    common.add_sbatch_arguments(s)
    s.set_defaults(fn=cmd_submit)
    sh = sub.add_parser("show", help="print the steps in submission order")
    sh.add_argument("pipeline")
    sh.add_argument("--var", action="append", default=[], metavar="KEY=VALUE")
    sh.set_defaults(fn=cmd_show)
    args = p.parse_args(argv)
    return common.main_wrapper("pipeline.py", lambda: args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
