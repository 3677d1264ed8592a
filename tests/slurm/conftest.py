"""Fixtures for the Slurm tests: the private cluster, the flowlm binary, token data, job polling.

    FLOWLM_BIN=build/release/flowlm /usr/bin/python3 -m pytest -q tests/slurm

The real-Slurm tests are skipped (reported as skipped) only when Slurm/munge are not
installed or we are not root; a cluster that is installed but does not start is an error.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("FLOWLM_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
SLURM_DIR = os.path.join(REPO, "slurm")
sys.path.insert(0, HERE)
sys.path.insert(0, SLURM_DIR)

from localslurm import LocalSlurm, SlurmUnavailable  # noqa: E402

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
            "PREEMPTED"}


@pytest.fixture(scope="session")
def repo():
    return REPO


@pytest.fixture(scope="session")
def flowlm_bin():
    b = os.environ.get("FLOWLM_BIN") or shutil.which("flowlm")
    if not b or not os.access(b, os.X_OK):
        pytest.fail("set FLOWLM_BIN to the flowlm executable (CTest passes $<TARGET_FILE:flowlm>); got {!r}".format(b))
    return os.path.abspath(b)


@pytest.fixture(scope="session")
def cluster():
    c = LocalSlurm()
    try:
        c.start()
    except SlurmUnavailable as e:
        if c.dir is None:  # not installed / not root: nothing was started
            pytest.skip("no local Slurm: {}".format(e))
        pytest.fail("Slurm is installed but the private cluster did not start: {}".format(e))
    yield c
    c.stop()


@pytest.fixture(scope="session")
def job_env(cluster, flowlm_bin):
    """Environment for submitters and jobs: the private conf, the binary, MPI as root, 1 thread."""
    e = cluster.env()
    e.update({"FLOWLM_BIN": flowlm_bin, "OMP_PROC_BIND": "false", "OMP_NUM_THREADS": "1",
              "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
              "OMPI_MCA_rmaps_base_oversubscribe": "1"})
    return e


@pytest.fixture(scope="session")
def data(tmp_path_factory, flowlm_bin, repo):
    """Token shards from the repository's sources (prepared once, without Slurm)."""
    d = str(tmp_path_factory.mktemp("data"))
    env = dict(os.environ, OMP_PROC_BIND="false", OMP_NUM_THREADS="1")
    r = subprocess.run([flowlm_bin, "prepare", "jobs/tiny.toml", "--set", "prepare.output_dir=" + d, "--set",
                        'prepare.inputs=["src/*/*.hpp", "src/*/*.cpp"]'], cwd=repo, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return ['data.train=["{}/text_train_*.bin"]'.format(d), 'data.val=["{}/text_val_*.bin"]'.format(d)]


def parse_job_lines(text):
    """`scontrol show job -o` lines -> list of dicts (the first occurrence of a key wins,
    so words inside Command= cannot overwrite the real fields)."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        d = {}
        for k, v in re.findall(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:]*)=(\S*)", line):
            d.setdefault(k, v)
        jobs.append(d)
    return jobs


class Jobs:
    def __init__(self, cluster, env):
        self.cluster, self.env = cluster, env

    def show(self, job_id):
        r = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], env=self.env, capture_output=True,
                           text=True)
        assert r.returncode == 0, "scontrol show job {}: {}".format(job_id, r.stderr)
        return parse_job_lines(r.stdout)

    def sbatch(self, *args, cwd=None, env=None):
        r = subprocess.run(["sbatch", "--parsable"] + [str(a) for a in args], env=env or self.env, cwd=cwd or REPO,
                           capture_output=True, text=True)
        assert r.returncode == 0, "sbatch {}: {}".format(args, r.stderr)
        return r.stdout.strip().split(";")[0]

    def wait(self, job_id, timeout=180, tasks=None, logs=()):
        """Waits until every job (or array task) of job_id is in a terminal state; returns its lines."""
        end = time.time() + timeout
        lines = []
        while time.time() < end:
            lines = self.show(job_id)
            if all(j.get("JobState") in TERMINAL for j in lines) and (tasks is None or len(lines) == tasks):
                return lines
            time.sleep(0.5)
        pytest.fail("job {} not finished after {} s: {}\n{}\n{}".format(
            job_id, timeout, [(j.get("JobId"), j.get("ArrayTaskId"), j.get("JobState")) for j in lines],
            read_logs(logs), self.cluster.log_tail()))


def read_logs(paths):
    out = []
    for p in paths:
        if os.path.exists(p):
            with open(p, errors="replace") as f:
                out.append("--- {} ---\n{}".format(p, f.read()[-3000:]))
    return "\n".join(out)


@pytest.fixture(scope="session")
def jobs(cluster, job_env):
    return Jobs(cluster, job_env)


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
