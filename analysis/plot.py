#!/usr/bin/env python3
"""Plots and tables from flowlm runs; prints the path of every file it writes.

    plot.py loss    RUN_DIR... [--labels A B] [--smooth N]          -> loss.png
    plot.py drift   PRETRAINED.h5 RUN_DIR... [--labels standard flow] [--relative]  -> drift.png
    plot.py weights SCORES.h5                                       -> weights.png
    plot.py lawa    RAW_DIR AVG_DIR [--eval eval.jsonl ...] [--metric loss]  -> lawa.png
    plot.py sweep   SWEEP_DIR|collect.csv                           -> sweep.png, sweep.md, sweep.csv
    plot.py demo    DEMO_DIR        (what `flowlm demo` calls)      -> DEMO_DIR/plots/*.png

Common: -o/--out-dir DIR (default: the current directory), --name NAME (file stem, default:
the kind). Run with Debian's /usr/bin/python3 (h5py, numpy, matplotlib). Exit status 1 with a
message naming the bad file on bad input, 2 on usage errors.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from flowlm_analysis import FlowlmFormatError, list_checkpoints  # noqa: E402
from flowlm_analysis import plots  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(prog="plot.py", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="kind", required=True, metavar="KIND")

    def add(name, help_text):
        s = sub.add_parser(name, help=help_text)
        s.add_argument("-o", "--out-dir", default=".", help="directory for the output files (default: .)")
        s.add_argument("--name", default=name, help="output file stem (default: %(default)s)")
        return s

    s = add("loss", "training / validation loss curves of one or more run dirs")
    s.add_argument("runs", nargs="+", help="run dirs (or metrics.jsonl files)")
    s.add_argument("--labels", nargs="+", help="one legend label per run")
    s.add_argument("--smooth", type=int, default=0, help="moving-average window for the train loss")

    s = add("drift", "per-layer distance from the pre-trained checkpoint across fine-tuning checkpoints")
    s.add_argument("pretrained", help="the pre-trained checkpoint (.h5)")
    s.add_argument("runs", nargs="+", help="fine-tuning run dirs (e.g. standard and flow)")
    s.add_argument("--labels", nargs="+", help="one legend label per run")
    s.add_argument("--relative", action="store_true", help="divide by the layer's pre-trained norm")

    s = add("weights", "histogram of FLOW weights and weight vs loss from scores.h5")
    s.add_argument("scores", help="scores.h5 from `flowlm score`")
    s.add_argument("--bins", type=int, default=40)

    s = add("lawa", "LAWA (averaged) vs raw checkpoints along a run")
    s.add_argument("raw", help="the run dir with step_*.h5")
    s.add_argument("averaged", help="the dir with the averaged checkpoints")
    s.add_argument("--eval", nargs="+", dest="eval_paths",
                   help="eval.jsonl files covering both (default: eval.jsonl in either dir)")
    s.add_argument("--metric", help="eval column to plot (default: loss, answer_loss or accuracy)")

    s = add("demo", "every plot of a `flowlm demo` directory, into DEMO_DIR/plots")
    s.add_argument("dir", help="the demo directory (flowlm demo --dir)")

    s = add("sweep", "a table (markdown + CSV) and plot of a sweep's eval results")
    s.add_argument("sweep", help="sweep dir (tasks.json + eval.jsonl per task) or a CSV from slurm/collect.py")
    return p


def demo_plots(d):
    """The demo's layout: pretrain/, finetune_{standard,flow}/seed<k>/, lawa/, score/seed<k>/scores.h5,
    eval_lawa/eval.jsonl. Curves, drift and weights are drawn for the first seed."""
    j = lambda *p: os.path.join(d, *p)  # noqa: E731
    out = j("plots")
    os.makedirs(out, exist_ok=True)
    pre = [c.path for c in list_checkpoints(j("pretrain"))]
    ft = {m: j("finetune_" + m, "seed1") for m in ("standard", "flow")}
    if not pre:
        raise FlowlmFormatError("{}: no pretraining checkpoints; run `flowlm demo --dir {}` first".format(d, d))
    return [
        plots.plot_loss([j("pretrain"), ft["standard"], ft["flow"]], os.path.join(out, "loss.png"),
                        labels=["pretrain", "standard FT", "FLOW FT"]),
        plots.plot_drift(pre[-1], [ft["standard"], ft["flow"]], os.path.join(out, "drift.png"),
                         labels=["standard", "FLOW"]),
        plots.plot_weights(j("score", "seed1", "scores.h5"), os.path.join(out, "weights.png")),
        plots.plot_lawa(j("pretrain"), j("lawa"), os.path.join(out, "lawa.png"),
                        eval_paths=[j("eval_lawa", "eval.jsonl")], metric="answer_loss"),
    ]


def run(args):
    out = lambda ext="png": os.path.join(args.out_dir, "{}.{}".format(args.name, ext))  # noqa: E731
    if args.kind == "loss":
        return [plots.plot_loss(args.runs, out(), labels=args.labels, smooth=args.smooth)]
    if args.kind == "drift":
        return [plots.plot_drift(args.pretrained, args.runs, out(), labels=args.labels, relative=args.relative)]
    if args.kind == "weights":
        return [plots.plot_weights(args.scores, out(), bins=args.bins)]
    if args.kind == "lawa":
        return [plots.plot_lawa(args.raw, args.averaged, out(), eval_paths=args.eval_paths, metric=args.metric)]
    if args.kind == "demo":
        return demo_plots(args.dir)
    if args.kind == "sweep":
        return list(plots.sweep_table(args.sweep, args.out_dir, name=args.name))
    raise AssertionError(args.kind)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        paths = run(args)
    except (OSError, KeyError, ValueError, FlowlmFormatError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print("plot.py {}: error: {}".format(args.kind, msg), file=sys.stderr)
        return 1
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
