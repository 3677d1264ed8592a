"""Shared pieces of slurm/pipeline.py and slurm/sweep.py: sbatch options, submission, TOML.

Standard library only (Python >= 3.11 for tomllib), so Debian's /usr/bin/python3 runs it.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
TEMPLATE = os.path.join(HERE, "flowlm.sbatch")


class UsageError(Exception):
    """A bad input file or argument: printed as `<prog>: error: ...`, exit code 2."""


def load_toml(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise UsageError("{}: file not found".format(path)) from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError("{}: not valid TOML: {}".format(path, e)) from None


def add_sbatch_arguments(p):
    """The options every submitter shares: where to run (never hard-coded) and how."""
    g = p.add_argument_group("Slurm (each also reads SBATCH_ACCOUNT, SBATCH_PARTITION, ... natively)")
    g.add_argument("--account", "-A", help="charge the jobs to this account")
    g.add_argument("--partition", "-p", help="submit to this partition")
    g.add_argument("--qos", help="quality of service")
    g.add_argument("--time", "-t", help="time limit of every job, overriding the files (e.g. 02:00:00)")
    g.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="extra sbatch argument, e.g. --sbatch-arg=--constraint=a100 (repeatable)")
    g.add_argument("--template", default=TEMPLATE, help="the batch script (default: %(default)s)")
    g.add_argument("--flowlm", metavar="BIN",
                   help="flowlm executable the jobs run (exported as FLOWLM_BIN; default: $FLOWLM_BIN or PATH)")
    g.add_argument("--dry-run", action="store_true", help="print the sbatch commands, submit nothing")


def sbatch_options(table, where):
    """Turns a TOML table {nodes = 2, gpus-per-node = 4, exclusive = true} into sbatch flags."""
    out = []
    for key, value in (table or {}).items():
        if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise UsageError("{}: sbatch option '{}' should be a long option name like 'gpus-per-node'".format(
                where, key))
        if value is True:
            out.append("--" + key)
        elif value is False:
            continue
        elif isinstance(value, (str, int, float)):
            out.append("--{}={}".format(key, value))
        else:
            raise UsageError("{}: sbatch option '{}' = {!r}: expected a string, number or boolean".format(
                where, key, value))
    return out


def cli_sbatch_options(args):
    out = []
    for flag in ("account", "partition", "qos", "time"):
        v = getattr(args, flag)
        if v:
            out.append("--{}={}".format(flag, v))
    return out + list(args.sbatch_arg)


def submit_env(args):
    env = dict(os.environ)
    if args.flowlm:
        env["FLOWLM_BIN"] = os.path.abspath(args.flowlm) if os.sep in args.flowlm else args.flowlm
    return env


def sbatch(cmd, env, dry_run):
    """Runs `sbatch --parsable ...` and returns the job id (a placeholder on --dry-run)."""
    full = ["sbatch", "--parsable"] + cmd
    if dry_run:
        print(" ".join(shlex.quote(c) for c in full))
        return None
    try:
        r = subprocess.run(full, env=env, capture_output=True, text=True)
    except FileNotFoundError:
        raise UsageError("sbatch not found: run this on a Slurm login node (or use --dry-run)") from None
    if r.returncode != 0:
        raise UsageError("sbatch failed ({}): {}\n  command: {}".format(
            r.returncode, r.stderr.strip(), " ".join(shlex.quote(c) for c in full)))
    job_id = r.stdout.strip().split(";")[0]  # --parsable prints "id" or "id;cluster"
    if not job_id.isdigit():
        raise UsageError("sbatch printed '{}', expected a job id".format(r.stdout.strip()))
    return job_id


def format_value(v):
    """A --set right-hand side: flowlm reads it as a TOML value (bare text stays a string)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) if isinstance(x, str) else format_value(x) for x in v) + "]"
    raise UsageError("cannot pass {!r} as a --set value".format(v))


def write_json(path, data):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main_wrapper(prog, fn):
    try:
        return fn()
    except UsageError as e:
        print("{}: error: {}".format(prog, e), file=sys.stderr)
        return 2


def parser(prog, description):
    return argparse.ArgumentParser(prog=prog, description=description,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
