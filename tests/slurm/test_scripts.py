"""The submitters, the collector and the batch template without Slurm (fast, always run)."""

import csv
import glob
import json
import os
import signal
import subprocess
import textwrap
import time

import pytest

from conftest import SLURM_DIR

import collect
import common
import pipeline
import sweep

TEMPLATE = os.path.join(SLURM_DIR, "flowlm.sbatch")


def write(path, text):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "w") as f:
        f.write(textwrap.dedent(text))
    return str(path)


# --- sweeps ---------------------------------------------------------------------------


def sweep_file(tmp_path, axes='"optim.lr" = [1e-3, 3e-3]\nseed = [1, 2, 3]\n', extra=""):
    return write(tmp_path / "s.toml", """\
        [sweep]
        name = "s"
        stage = "train"
        job = "jobs/tiny.toml"
        dir = "{}"
        set = ["train.max_steps=20"]
        {}
        [axes]
        """.format(tmp_path / "sw", extra) + axes)


def test_grid_is_the_cartesian_product_last_axis_fastest(tmp_path):
    sw, axes = sweep.load_sweep(sweep_file(tmp_path))
    grid = sweep.expand(sw, axes)
    assert len(grid) == 6
    assert grid[0] == {"optim.lr": 1e-3, "run.seed": 1}
    assert grid[1] == {"optim.lr": 1e-3, "run.seed": 2}
    assert grid[5] == {"optim.lr": 3e-3, "run.seed": 3}
    assert len({json.dumps(g, sort_keys=True) for g in grid}) == 6


def test_tasks_have_their_own_run_dir_and_overrides(tmp_path):
    path = sweep_file(tmp_path)
    data = sweep.build_tasks(path, *sweep.load_sweep(path))
    t = data["tasks"]["4"]
    assert t["run_dir"] == str(tmp_path / "sw" / "task_0004")
    argv = t["argv"]
    assert argv[:2] == ["train", os.path.abspath("jobs/tiny.toml")]
    sets = [argv[i + 1] for i in range(len(argv)) if argv[i] == "--set"]
    assert sets == ["train.max_steps=20", "optim.lr=0.003", "run.seed=2", "run.dir=" + t["run_dir"],
                    "train.resume=true"]
    assert len({t["run_dir"] for t in data["tasks"].values()}) == 6


@pytest.mark.parametrize("axes,msg", [
    ("", "[axes] is empty"),
    ('"optim.lr" = 0.1\n', "non-empty list"),
    ('"optim.lr" = []\n', "non-empty list"),
    ('lr = [1]\n', "section.key"),
])
def test_bad_axes_are_rejected(tmp_path, axes, msg):
    with pytest.raises(common.UsageError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        sweep.load_sweep(sweep_file(tmp_path, axes))


def test_unknown_sweep_key_is_rejected(tmp_path):
    with pytest.raises(common.UsageError, match="unknown key"):
        sweep.load_sweep(sweep_file(tmp_path, extra="max_paralel = 2"))


def test_format_value_gives_toml():
    assert common.format_value(True) == "true"
    assert common.format_value(3) == "3"
    assert common.format_value(1e-05) == "1e-05"
    assert common.format_value("median") == "median"
    assert common.format_value(["a", 2]) == '["a", 2]'
    with pytest.raises(common.UsageError):
        common.format_value({"a": 1})


def test_compress_array_ids():
    assert sweep.compress([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert sweep.compress([3]) == "3"
    assert sweep.compress([4, 2, 3]) == "2-4"


def test_resubmission_leaves_out_finished_tasks(tmp_path, capsys):
    path = sweep_file(tmp_path)
    assert sweep.main(["submit", path, "--dry-run", "--max-parallel", "2", "--account", "acct"]) == 0
    out = capsys.readouterr().out
    assert "--array=0-5%2" in out and "--account=acct" in out and "--tasks" in out
    write(tmp_path / "sw" / "task_0001" / "DONE", "1\n")  # finished: DONE marker
    write(tmp_path / "sw" / "task_0004" / "step_00000020.h5", "")  # finished: final checkpoint
    write(tmp_path / "sw" / "task_0005" / "step_00000010.h5", "")  # not finished
    assert sweep.main(["submit", path, "--dry-run"]) == 0
    assert "--array=0,2-3,5 " in capsys.readouterr().out
    for i in (0, 2, 3, 5):
        write(tmp_path / "sw" / "task_{:04d}".format(i) / "DONE", "1\n")
    assert sweep.main(["submit", path, "--dry-run"]) == 0
    assert "nothing to submit" in capsys.readouterr().out


def test_changed_grid_is_refused(tmp_path, capsys):
    path = sweep_file(tmp_path)
    data = sweep.build_tasks(path, *sweep.load_sweep(path))
    common.write_json(str(tmp_path / "sw" / "tasks.json"), data)
    assert sweep.main(["submit", path, "--dry-run"]) == 0
    path = sweep_file(tmp_path, axes='"optim.lr" = [1e-2]\n')
    assert sweep.main(["submit", path, "--dry-run"]) == 2
    assert "different grid" in capsys.readouterr().err
    assert sweep.main(["submit", path, "--dry-run", "--force"]) == 0


def test_bad_max_parallel(tmp_path, capsys):
    assert sweep.main(["submit", sweep_file(tmp_path), "--dry-run", "--max-parallel", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err


# --- pipelines ------------------------------------------------------------------------


def pipeline_file(tmp_path, steps, head='[pipeline]\nname = "p"\nrun_dir = "RUN"\n'):
    return write(tmp_path / "p.toml", head.replace("RUN", str(tmp_path / "run")) + textwrap.dedent(steps))


STEPS = """
[sbatch]
time = "01:00:00"
gpus-per-node = 1
[[step]]
name = "c"
stage = "eval"
job = "j.toml"
after = ["a", "b"]
[[step]]
name = "a"
stage = "score"
job = "j.toml"
set = ["run.dir=${run_dir}/a"]
[[step]]
name = "b"
stage = "train"
job = "j.toml"
after = "a"
sbatch = { gpus-per-node = false, time = "00:10:00" }
"""


def test_pipeline_order_and_commands(tmp_path, capsys):
    path = pipeline_file(tmp_path, STEPS)
    meta, steps = pipeline.load_pipeline(path, [])
    assert [s["name"] for s in steps] == ["a", "b", "c"]
    assert steps[0]["argv"] == ["score", "j.toml", "--set", "run.dir={}/a".format(tmp_path / "run")]
    assert "--gpus-per-node=1" in steps[0]["sbatch"]
    assert steps[1]["sbatch"] == ["--time=00:10:00"]  # `false` dropped the default
    assert pipeline.main(["submit", path, "--dry-run", "--partition", "part"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert "--dependency=afterok:<a>" in lines[1] and "--kill-on-invalid-dep=yes" in lines[1]
    assert "--dependency=afterok:<a>:<b>" in lines[2]
    assert all("--partition=part" in line for line in lines)
    assert "--dependency" not in lines[0]
    assert not os.path.exists(tmp_path / "run" / "jobs.json")  # dry run writes nothing


@pytest.mark.parametrize("steps,msg", [
    ('[[step]]\nname="a"\nstage="train"\njob="j"\nafter=["b"]\n[[step]]\nname="b"\nstage="x"\njob="j"\nafter=["a"]\n',
     "cycle"),
    ('[[step]]\nname="a"\nstage="train"\njob="j"\nafter=["zz"]\n', "unknown step 'zz'"),
    ('[[step]]\nname="a"\nstage="train"\njob="j"\n[[step]]\nname="a"\nstage="x"\njob="j"\n', "duplicate"),
    ('[[step]]\nname="a"\nstage="train"\n', "exactly one of job"),
    ('[[step]]\nname="a"\nstage="train"\njob="${nope}"\n', "unknown variable"),
    ('[[step]]\nname="a"\nstage="train"\njob="j"\nsbatch={gpus=[1]}\n', "expected a string"),
    ('[[step]]\nname="a"\nstage="train"\njob="j"\nseet=[]\n', "unknown key"),
    ('', "no \\[\\[step\\]\\]"),
])
def test_bad_pipelines_are_rejected(tmp_path, steps, msg):
    with pytest.raises(common.UsageError, match=msg):
        pipeline.load_pipeline(pipeline_file(tmp_path, steps), [])


def test_vars_and_cli_overrides(tmp_path):
    path = pipeline_file(tmp_path, '[vars]\njob = "a.toml"\nout = "${run_dir}/x"\n'
                         '[[step]]\nname="a"\nstage="train"\njob="${job}"\nset=["run.dir=${out}"]\n')
    _, steps = pipeline.load_pipeline(path, ["job=b.toml", "run_dir=/r"])
    assert steps[0]["argv"] == ["train", "b.toml", "--set", "run.dir=/r/x"]


def test_shipped_examples_parse(tmp_path, capsys):
    files = glob.glob(os.path.join(SLURM_DIR, "pipelines", "*.toml"))
    assert len(files) >= 4
    for f in files:
        meta, steps = pipeline.load_pipeline(f, [])
        assert steps, f
    sweeps = glob.glob(os.path.join(SLURM_DIR, "sweeps", "*.toml"))
    assert len(sweeps) >= 3
    for f in sweeps:
        assert sweep.main(["submit", f, "--dry-run", "--dir", str(tmp_path / os.path.basename(f))]) == 0
    assert "--array=" in capsys.readouterr().out


# --- collector ------------------------------------------------------------------------


def test_collect_gathers_eval_rows_with_axis_columns(tmp_path, capsys):
    path = sweep_file(tmp_path, axes='"flow.tau" = ["median", 0.5]\n"optim.lr" = [1e-3, 3e-3]\n')
    data = sweep.build_tasks(path, *sweep.load_sweep(path))
    common.write_json(str(tmp_path / "sw" / "tasks.json"), data)
    rows = {
        "0": [{"checkpoint": "step_20", "set": "val", "loss": 2.5}, {"checkpoint": "step_20", "set": "mul",
                                                                     "accuracy": 0.25}],
        "1": [{"checkpoint": "step_20", "set": "val", "loss": 2.25}],
        "3": [{"checkpoint": "step_20", "set": "val", "loss": 2.0, "extra": [1, 2]}],
    }
    for tid, rs in rows.items():
        write(os.path.join(data["tasks"][tid]["run_dir"], "eval.jsonl"), "".join(json.dumps(r) + "\n" for r in rs))
    out = str(tmp_path / "table.csv")
    assert collect.main([str(tmp_path / "sw"), "-o", out]) == 0
    assert "1 task(s) have no eval.jsonl: 2" in capsys.readouterr().err
    with open(out) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4
    assert list(table[0])[:4] == ["task", "flow.tau", "optim.lr", "run_dir"]
    assert {"checkpoint", "set", "loss", "accuracy", "extra"} <= set(table[0])
    assert table[0]["flow.tau"] == "median" and table[0]["optim.lr"] == "0.001" and table[0]["loss"] == "2.5"
    assert table[1]["accuracy"] == "0.25" and table[1]["loss"] == ""
    assert table[2]["task"] == "1" and table[2]["optim.lr"] == "0.003"
    assert table[3]["task"] == "3" and table[3]["flow.tau"] == "0.5" and table[3]["extra"] == "[1, 2]"
    # --last keeps one row per task
    assert collect.main([str(tmp_path / "sw"), "--last", "-o", out]) == 0
    with open(out) as f:
        assert [r["task"] for r in csv.DictReader(f)] == ["0", "1", "3"]


def test_collect_errors(tmp_path, capsys):
    assert collect.main([str(tmp_path)]) == 2  # no tasks.json
    assert "tasks.json" in capsys.readouterr().err
    path = sweep_file(tmp_path)
    data = sweep.build_tasks(path, *sweep.load_sweep(path))
    common.write_json(str(tmp_path / "sw" / "tasks.json"), data)
    assert collect.main([str(tmp_path / "sw")]) == 1  # no eval.jsonl anywhere
    write(os.path.join(data["tasks"]["0"]["run_dir"], "eval.jsonl"), '{"loss": 1}\nnot json\n')
    assert collect.main([str(tmp_path / "sw")]) == 2
    assert "eval.jsonl:2" in capsys.readouterr().err


# --- the batch template, run by bash with fake flowlm/scontrol/srun -----------------------


FAKE_FLOWLM = """\
#!/usr/bin/env bash
printf '%s\\n' "$@" > "$FAKE_DIR/args"
trap 'echo got-usr1 >> "$FAKE_DIR/events"; exit 3' USR1
trap 'echo got-term >> "$FAKE_DIR/events"; exit 3' TERM
[ -n "${FAKE_EXIT:-}" ] && exit "$FAKE_EXIT"
touch "$FAKE_DIR/started"
for i in $(seq 200); do sleep 0.05; done
exit 0
"""


@pytest.fixture
def fake(tmp_path):
    bindir = tmp_path / "bin"
    write(bindir / "flowlm", FAKE_FLOWLM)
    write(bindir / "scontrol", '#!/usr/bin/env bash\necho "$@" >> "$FAKE_DIR/scontrol"\n')
    for f in ("flowlm", "scontrol"):
        os.chmod(str(bindir / f), 0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update({"PATH": "{}:{}".format(bindir, os.environ["PATH"]), "FAKE_DIR": str(tmp_path),
                "FLOWLM_LAUNCHER": "none", "FLOWLM_BIN": "flowlm"})
    return tmp_path, env


def read(path):
    with open(str(path)) as f:
        return f.read()


def test_template_parses():
    subprocess.run(["bash", "-n", TEMPLATE], check=True)
    text = read(TEMPLATE)
    for key in ("--requeue", "--signal=B:USR1@", "--time=", "--nodes=", "--ntasks-per-node="):
        assert "#SBATCH " + key in text
    assert "#SBATCH --account" not in text and "#SBATCH --partition" not in text


def test_template_forwards_usr1_and_requeues(fake):
    d, env = fake
    env["SLURM_JOB_ID"] = "77"
    p = subprocess.Popen(["bash", TEMPLATE, "train", "job.toml", "--set", "a.b=1"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.time() + 10
    while not os.path.exists(str(d / "started")) and time.time() < end:
        time.sleep(0.05)
    p.send_signal(signal.SIGUSR1)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 0, out
    assert "got-usr1" in read(d / "events")
    assert read(d / "scontrol").split() == ["requeue", "77"]
    assert "requeueing job 77" in out
    assert read(d / "args").split("\n")[:4] == ["train", "job.toml", "--set", "a.b=1"]


def test_template_resumes_after_restart_and_passes_failures_through(fake):
    d, env = fake
    env.update({"SLURM_JOB_ID": "78", "SLURM_RESTART_COUNT": "1", "FAKE_EXIT": "0"})
    r = subprocess.run(["bash", TEMPLATE, "train", "job.toml"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert read(d / "args").split() == ["train", "job.toml", "--set", "train.resume=true"]
    env["FAKE_EXIT"] = "1"
    r = subprocess.run(["bash", TEMPLATE, "eval", "job.toml"], env=env, capture_output=True, text=True)
    assert r.returncode == 1
    assert read(d / "args").split() == ["eval", "job.toml"]  # resume only for train
    assert not os.path.exists(str(d / "scontrol"))  # failures are not requeued


def test_template_runs_a_sweep_task(fake, tmp_path):
    d, env = fake
    path = sweep_file(tmp_path)
    data = sweep.build_tasks(path, *sweep.load_sweep(path))
    common.write_json(str(tmp_path / "sw" / "tasks.json"), data)
    env.update({"SLURM_ARRAY_TASK_ID": "3", "FAKE_EXIT": "0"})
    r = subprocess.run(["bash", TEMPLATE, "--tasks", str(tmp_path / "sw" / "tasks.json")], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert read(d / "args").splitlines() == data["tasks"]["3"]["argv"]
    assert os.path.exists(data["tasks"]["3"]["done_file"])
    assert not os.path.exists(data["tasks"]["2"]["done_file"])
    env["SLURM_ARRAY_TASK_ID"] = "9"
    r = subprocess.run(["bash", TEMPLATE, "--tasks", str(tmp_path / "sw" / "tasks.json")], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no task 9" in r.stderr
