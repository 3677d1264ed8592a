#!/usr/bin/env python3
"""Gather every task's eval.jsonl of a sweep into one CSV table.

    slurm/collect.py <sweep_dir> [-o table.csv] [--file eval.jsonl] [--last]

One output row per JSONL row, prefixed by the task id, its axis values (one column per
axis) and its run dir; the other columns are the union of the rows' keys. --file picks
another per-task file (e.g. metrics.jsonl) and --last keeps only each task's last row.
Tasks without the file are listed on stderr; no rows at all is an error (exit 1).
"""

import csv
import json
import os
import sys

import common
from common import UsageError


def read_jsonl(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError("{}:{}: not a JSON object: {}".format(path, n, e)) from None
            if not isinstance(row, dict):
                raise UsageError("{}:{}: expected a JSON object per line".format(path, n))
            rows.append(row)
    return rows


def cell(v):
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def collect(sweep_dir, name="eval.jsonl", last=False):
    """Returns (header, rows, task ids without the file)."""
    tasks_path = os.path.join(sweep_dir, "tasks.json")
    try:
        with open(tasks_path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UsageError("{}: not found (is {} a sweep dir written by sweep.py submit?)".format(
            tasks_path, sweep_dir)) from None
    axes = list(data.get("axes", {}))
    header = ["task"] + axes + ["run_dir"]
    extra, rows, missing = [], [], []
    for tid in sorted(data["tasks"], key=int):
        t = data["tasks"][tid]
        path = os.path.join(t["run_dir"], name)
        if not os.path.exists(path):
            missing.append(tid)
            continue
        found = read_jsonl(path)
        if last:
            found = found[-1:]
        for r in found:
            for k in r:
                if k not in extra and k not in header:
                    extra.append(k)
            base = {"task": int(tid), "run_dir": t["run_dir"]}
            base.update({a: cell(t["overrides"].get(a)) for a in axes})
            base.update({k: cell(v) for k, v in r.items() if k not in base})
            rows.append(base)
    return header + extra, rows, missing


def main(argv=None):
    p = common.parser("collect.py", __doc__)
    p.add_argument("sweep_dir")
    p.add_argument("-o", "--output", help="CSV file to write (default: stdout)")
    p.add_argument("--file", default="eval.jsonl", help="per-task JSONL file (default: %(default)s)")
    p.add_argument("--last", action="store_true", help="keep only the last row of each task")
    args = p.parse_args(argv)

    def run():
        header, rows, missing = collect(args.sweep_dir, args.file, args.last)
        if missing:
            print("collect.py: {} task(s) have no {}: {}".format(len(missing), args.file, ", ".join(missing)),
                  file=sys.stderr)
        if not rows:
            print("collect.py: error: no {} rows in {}".format(args.file, args.sweep_dir), file=sys.stderr)
            return 1
        out = open(args.output, "w", newline="") if args.output else sys.stdout
        try:
            w = csv.DictWriter(out, fieldnames=header, restval="")
            w.writeheader()
            w.writerows(rows)
        finally:
            if args.output:
                out.close()
        if args.output:
            print("collect.py: wrote {} rows from {} tasks to {}".format(
                len(rows), len({r["task"] for r in rows}), args.output), file=sys.stderr)
        return 0

    return common.main_wrapper("collect.py", run)


if __name__ == "__main__":
    sys.exit(main())
