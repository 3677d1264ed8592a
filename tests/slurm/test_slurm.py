"""slurm/ scripts on a real (private, single-node) Slurm: pipelines, sweeps, preemption, MPI."""

import csv
import glob
import json
import os
import subprocess
import sys
import time
import tomllib

import pytest

from conftest import REPO, SLURM_DIR, metrics, read_logs

PY = sys.executable


def run_script(script, args, env):
    r = subprocess.run([PY, os.path.join(SLURM_DIR, script)] + [str(a) for a in args], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "{} {}: {}\n{}".format(script, args, r.stdout, r.stderr)
    return r.stdout


def epoch(slurm_time):
    return time.mktime(time.strptime(slurm_time, "%Y-%m-%dT%H:%M:%S"))


def test_pipeline_runs_steps_in_dependency_order(tmp_path, jobs, job_env):
    run_dir = tmp_path / "pipe"
    out = run_script("pipeline.py", ["submit", "slurm/pipelines/tiny.toml", "--var", "run_dir=" + str(run_dir),
                                     "--var", "steps=20", "--var", "more_steps=30", "--var",
                                     "final_ckpt=step_00000030.h5", "--time=10"], job_env)
    printed = dict(line.split() for line in out.splitlines() if not line.startswith("wrote"))
    with open(run_dir / "jobs.json") as f:
        record = json.load(f)
    ids = {s["name"]: s["job_id"] for s in record["steps"]}
    assert printed == ids and list(ids) == ["prepare", "train", "train_more", "inspect"]
    assert len(set(ids.values())) == 4
    deps = {s["name"]: s["dependency"] for s in record["steps"]}
    assert deps["prepare"] == "" and deps["train"] == "afterok:" + ids["prepare"]
    assert deps["inspect"] == "afterok:" + ids["train_more"]

    logs = glob.glob(str(run_dir / "logs" / "*.out"))
    info = {}
    for name, jid in ids.items():
        (j,) = jobs.wait(jid, timeout=120, logs=logs)
        assert j["JobState"] == "COMPLETED", (name, j, read_logs(logs))
        info[name] = j
    # Each step started only after the one it depends on had ended (second resolution).
    for before, after in (("prepare", "train"), ("train", "train_more"), ("train_more", "inspect")):
        assert epoch(info[after]["StartTime"]) >= epoch(info[before]["EndTime"]), (before, after)
    m = metrics(run_dir / "train")
    assert m[-1]["step"] == 30
    assert (run_dir / "train" / "step_00000020.h5").exists() and (run_dir / "train" / "step_00000030.h5").exists()
    with open(run_dir / "logs" / "train_more-{}.out".format(ids["train_more"])) as f:
        assert "resuming from" in f.read()
    with open(run_dir / "logs" / "inspect-{}.out".format(ids["inspect"])) as f:
        assert "step_00000030.h5" in f.read()


def test_failed_step_cancels_its_dependents(tmp_path, jobs, job_env):
    pfile = tmp_path / "fail.toml"
    pfile.write_text('[pipeline]\nname = "fail"\nrun_dir = "{}"\n'
                     '[[step]]\nname = "bad"\nstage = "train"\njob = "{}/missing.toml"\n'
                     '[[step]]\nname = "next"\nstage = "inspect"\nargs = ["x.h5"]\nafter = ["bad"]\n'.format(
                         tmp_path / "run", tmp_path))
    out = run_script("pipeline.py", ["submit", pfile, "--time=5"], job_env)
    ids = dict(line.split() for line in out.splitlines() if not line.startswith("wrote"))
    (bad,) = jobs.wait(ids["bad"], timeout=60)
    assert bad["JobState"] == "FAILED"
    (nxt,) = jobs.wait(ids["next"], timeout=60)
    assert nxt["JobState"] == "CANCELLED"
    assert not glob.glob(str(tmp_path / "run" / "logs" / "next-*.out"))  # it never ran


def test_sweep_array_with_throttle_resubmit_and_collect(tmp_path, jobs, job_env, data):
    sdir = tmp_path / "sweep"
    args = ["submit", "slurm/sweeps/tiny_lr.toml", "--dir", sdir, "--max-parallel", "2", "--time=10"]
    for kv in data:
        args += ["--set", kv]
    out = run_script("sweep.py", args, job_env)
    assert "4 of 4 tasks (0-3%2)" in out
    job_id = out.split("array job ")[1].split()[0]
    with open(sdir / "tasks.json") as f:
        tasks = json.load(f)["tasks"]
    assert len(tasks) == 4
    first = jobs.show(job_id)
    assert first[0].get("ArrayTaskThrottle") == "2", first[0]

    logs = [str(sdir / "logs" / "task_{}.out".format(i)) for i in range(4)]
    lines = jobs.wait(job_id, timeout=150, tasks=4, logs=logs)
    assert sorted(j["ArrayTaskId"] for j in lines) == ["0", "1", "2", "3"]
    assert all(j["JobState"] == "COMPLETED" for j in lines), read_logs(logs)

    # Never more than 2 tasks ran at once (from the start/end stamps the template prints).
    events = []
    for log in logs:
        with open(log) as f:
            for line in f:
                if line.startswith("flowlm.sbatch: start "):
                    events.append((float(line.split()[2]), 1))
                elif line.startswith("flowlm.sbatch: end "):
                    events.append((float(line.split()[2]), -1))
    assert len(events) == 8
    running, peak = 0, 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    assert peak <= 2

    # Each task used its own overrides and run dir.
    finals = set()
    for t in tasks.values():
        with open(os.path.join(t["run_dir"], "config.toml"), "rb") as f:
            cfg = tomllib.load(f)
        assert cfg["optim"]["lr"] == t["overrides"]["optim.lr"]
        assert cfg["run"]["seed"] == t["overrides"]["run.seed"]
        assert os.path.exists(t["done_file"])
        m = metrics(t["run_dir"])
        assert m[-1]["step"] == 20
        finals.add(m[-1]["loss"])
    assert len(finals) == 4

    # Re-submitting skips finished tasks.
    assert "nothing to submit" in run_script("sweep.py", args, job_env)
    os.remove(tasks["2"]["done_file"])
    os.remove(os.path.join(tasks["2"]["run_dir"], "step_00000020.h5"))
    assert "--array=2%2 " in run_script("sweep.py", args + ["--dry-run"], job_env)

    table = tmp_path / "table.csv"
    run_script("collect.py", [sdir, "--file", "metrics.jsonl", "--last", "-o", table], job_env)
    with open(table) as f:
        rows = list(csv.DictReader(f))
    assert [r["task"] for r in rows] == ["0", "1", "2", "3"]
    assert {float(r["loss"]) for r in rows} == finals
    assert [float(r["optim.lr"]) for r in rows] == [tasks[str(i)]["overrides"]["optim.lr"] for i in range(4)]


def test_signalled_training_is_requeued_and_matches_an_uninterrupted_run(tmp_path, jobs, data):
    common = ["train", "jobs/tiny.toml", "--set", "train.max_steps=300", "--set", "train.log_every=1"]
    for kv in data:
        common += ["--set", kv]
    template = os.path.join(SLURM_DIR, "flowlm.sbatch")
    ref_log, int_log = str(tmp_path / "ref.out"), str(tmp_path / "int.out")
    ref = jobs.sbatch("--time=10", "--output=" + ref_log, template, *common, "--set",
                      "run.dir={}".format(tmp_path / "ref"))
    intr = jobs.sbatch("--time=10", "--output=" + int_log, template, *common, "--set",
                       "run.dir={}".format(tmp_path / "int"))
    # Signal once training is under way (as Slurm does with --signal=B:USR1@N near the time limit).
    mfile = tmp_path / "int" / "metrics.jsonl"
    end = time.time() + 90
    while time.time() < end:
        if mfile.exists() and len(mfile.read_text().splitlines()) >= 10:
            break
        time.sleep(0.2)
    else:
        pytest.fail("no training progress in {}\n{}".format(mfile, read_logs([int_log])))
    r = subprocess.run(["scancel", "--signal=USR1", "--batch", intr], env=jobs.env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    (j,) = jobs.wait(intr, timeout=150, logs=[int_log])
    (k,) = jobs.wait(ref, timeout=150, logs=[ref_log])
    with open(int_log) as f:
        text = f.read()
    assert j["JobState"] == "COMPLETED" and k["JobState"] == "COMPLETED", text
    assert j["Restarts"] == "1", "the job was not requeued (finished before the signal?)\n" + text
    assert k["Restarts"] == "0"
    assert "got SIGUSR1" in text and "requeueing job" in text and "resuming from" in text
    a, b = metrics(tmp_path / "int"), metrics(tmp_path / "ref")
    assert [row["step"] for row in a] == list(range(1, 301))  # no step lost or repeated
    assert a[-1]["step"] == b[-1]["step"] == 300
    assert a[-1]["loss"] == b[-1]["loss"]  # exactly: resume continues the same trajectory


def test_two_ranks_with_srun_pmix_and_with_mpirun(tmp_path, jobs, job_env, data):
    base = ["train", "jobs/tiny.toml", "--set", "train.max_steps=10"]
    for kv in data:
        base += ["--set", kv]
    template = os.path.join(SLURM_DIR, "flowlm.sbatch")
    ids, logs = {}, []
    for launcher in ("srun", "mpirun"):
        env = dict(job_env, FLOWLM_LAUNCHER=launcher)
        log = str(tmp_path / (launcher + ".out"))
        logs.append(log)
        ids[launcher] = jobs.sbatch("--ntasks-per-node=2", "--time=5", "--output=" + log, template, *base, "--set",
                                    "run.dir={}".format(tmp_path / launcher), env=env)
    for launcher, jid in ids.items():
        (j,) = jobs.wait(jid, timeout=120, logs=logs)
        assert j["JobState"] == "COMPLETED", read_logs(logs)
    with open(logs[0]) as f:
        assert "srun --export=ALL --mpi=pmix" in f.read()
    a, b = metrics(tmp_path / "srun"), metrics(tmp_path / "mpirun")
    assert a[-1]["step"] == b[-1]["step"] == 10
    assert a[-1]["loss"] == b[-1]["loss"]  # same 2-rank run, however it was launched


def test_gpu_jobs_bind_one_rank_per_gpu(tmp_path, jobs, job_env):
    # The harness's node has two stand-in GPUs; a stand-in flowlm prints what each rank sees.
    fake = tmp_path / "show-gpus"
    fake.write_text('#!/usr/bin/env bash\necho "rank=$SLURM_PROCID gpus=${CUDA_VISIBLE_DEVICES:-none}"\n')
    fake.chmod(0o755)
    log = str(tmp_path / "gpu.out")
    jid = jobs.sbatch("--gpus-per-node=2", "--ntasks-per-node=2", "--time=2", "--output=" + log,
                      os.path.join(SLURM_DIR, "flowlm.sbatch"), "train", "job.toml",
                      env=dict(job_env, FLOWLM_BIN=str(fake)))
    (j,) = jobs.wait(jid, timeout=60, logs=[log])
    assert j["JobState"] == "COMPLETED", read_logs([log])
    with open(log) as f:
        seen = dict(line.split()[0:2] for line in f if line.startswith("rank="))
    assert sorted(seen) == ["rank=0", "rank=1"], read_logs([log])
    assert sorted(seen.values()) == ["gpus=0", "gpus=1"]  # one distinct GPU per rank
