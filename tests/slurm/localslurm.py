"""A private single-node Slurm for tests: munged, slurmctld and slurmd under one temp dir.

    with LocalSlurm() as cluster:      # raises SlurmUnavailable when it cannot start
        env = cluster.env()            # SLURM_CONF=<tmp>/slurm.conf for the client commands
        subprocess.run(["sbatch", ...], env=env)

Everything (conf, munge key and socket, state, spool, logs) lives in the temp dir, the
daemons listen on free ports, and nothing touches a system Slurm or munge. Needs root
(slurmd runs jobs as their user) and Debian's slurm-wlm + munge packages.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time


class SlurmUnavailable(RuntimeError):
    """Slurm is not installed or cannot be started here (the caller skips)."""


DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel", "srun")


def _which(name):
    for d in ("", "/usr/sbin", "/usr/bin", "/sbin"):
        p = shutil.which(name) if not d else os.path.join(d, name)
        if p and os.access(p, os.X_OK):
            return p
    return None


def _free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class LocalSlurm:
    def __init__(self, cpus=None, keep=False):
        self.cpus = cpus or os.cpu_count() or 1
        self.keep = keep or os.environ.get("FLOWLM_KEEP_SLURM") == "1"
        self.dir = None
        self.procs = {}
        self.host = socket.gethostname().split(".")[0]

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        missing = [n for n in DAEMONS + CLIENTS if not _which(n)]
        if missing:
            raise SlurmUnavailable(
                "Slurm/munge not installed (missing: {}); install with "
                "`apt-get install -y slurm-wlm munge` (or run .ci/setup)".format(", ".join(missing)))
        if os.geteuid() != 0:
            raise SlurmUnavailable("the private Slurm needs root (slurmd starts jobs as their user)")
        self.dir = tempfile.mkdtemp(prefix="flowlm-slurm-")
        try:
            self._write_files()
            self._start_munge()
            self._start_slurm()
        except Exception:
            self.stop()
            raise

    def stop(self):
        # slurmd first so no job is left running, then the controller, then munge.
        for name in ("slurmd", "slurmctld", "munged"):
            p = self.procs.pop(name, None)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers for tests ----------------------------------------------------------------
    def env(self, base=None):
        e = dict(os.environ if base is None else base)
        e["SLURM_CONF"] = self.conf
        for k in list(e):  # an outer allocation's variables would confuse sbatch/srun
            if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")) and k != "SLURM_CONF":
                del e[k]
        return e

    def run(self, *cmd, check=True, timeout=60):
        return subprocess.run(list(cmd), env=self.env(), check=check, timeout=timeout,
                              capture_output=True, text=True)

    def log_tail(self, n=40):
        out = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            p = os.path.join(self.dir or "", name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    lines = f.readlines()[-n:]
                out.append("--- {} ---\n{}".format(name, "".join(lines)))
        return "\n".join(out)

    # -- setup --------------------------------------------------------------------------
    @property
    def conf(self):
        return os.path.join(self.dir, "slurm.conf")

    def _write_files(self):
        d = self.dir
        for sub in ("state", "spool", "munge"):
            os.makedirs(os.path.join(d, sub), mode=0o700)
        self.munge_socket = os.path.join(d, "munge", "munge.socket")
        with open(os.path.join(d, "munge", "munge.key"), "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(os.path.join(d, "munge", "munge.key"), 0o400)
        ctld_port, slurmd_port = _free_ports(2)
        # Small memory so any machine satisfies it; no cgroups (proctrack/linuxproc,
        # task/none) so it also works in containers; cred_expire=5 so a requeued job
        # restarts after seconds instead of two minutes.
        conf = """\
ClusterName=flowlmtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock},cred_expire=5
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={d}/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
MessageTimeout=10
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=500 Gres=gpu:2 State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
""".format(host=self.host, ctld_port=ctld_port, slurmd_port=slurmd_port, sock=self.munge_socket,
           d=d, cpus=self.cpus)
        with open(self.conf, "w") as f:
            f.write(conf)
        open(os.path.join(d, "plugstack.conf"), "w").close()
        # Two stand-in GPUs (any existing files do): Slurm hands them out per task and sets
        # CUDA_VISIBLE_DEVICES, which is what the template's one-rank-per-GPU binding relies on.
        with open(os.path.join(d, "gres.conf"), "w") as f:
            f.write("NodeName={} Name=gpu File=/dev/null\nNodeName={} Name=gpu File=/dev/zero\n".format(
                self.host, self.host))

    def _spawn(self, name, cmd):
        log = open(os.path.join(self.dir, name + ".out"), "w")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            env=self.env(), start_new_session=True)
        log.close()

    def _wait(self, what, pred, timeout):
        end = time.time() + timeout
        while time.time() < end:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise SlurmUnavailable("{} exited with {} while waiting for {}:\n{}".format(
                        name, p.returncode, what, self._outputs()))
            if pred():
                return
            time.sleep(0.3)
        raise SlurmUnavailable("timed out waiting for {}:\n{}".format(what, self._outputs()))

    def _outputs(self):
        out = []
        for name in self.procs:
            p = os.path.join(self.dir, name + ".out")
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    out.append("{}: {}".format(name, f.read()[-2000:]))
        return "\n".join(out) + "\n" + self.log_tail(20)

    def _start_munge(self):
        d = os.path.join(self.dir, "munge")
        self._spawn("munged", [_which("munged"), "--foreground", "--force",
                               "--socket=" + self.munge_socket,
                               "--key-file=" + os.path.join(d, "munge.key"),
                               "--pid-file=" + os.path.join(d, "munged.pid"),
                               "--seed-file=" + os.path.join(d, "munged.seed"),
                               "--log-file=" + os.path.join(self.dir, "munged.log")])
        self._wait("munged's socket", lambda: os.path.exists(self.munge_socket), 20)

    def _start_slurm(self):
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", self.conf])

        def ctld_up():
            return self.run("scontrol", "ping", check=False, timeout=20).stdout.find("UP") >= 0

        self._wait("slurmctld (scontrol ping)", ctld_up, 40)
        self._spawn("slurmd", [_which("slurmd"), "-D", "-f", self.conf, "-N", self.host])

        def node_idle():
            r = self.run("sinfo", "-h", "-N", "-o", "%t", check=False, timeout=20)
            return r.returncode == 0 and r.stdout.strip().startswith("idle")

        self._wait("node {} to be idle (sinfo)".format(self.host), node_idle, 60)


if __name__ == "__main__":  # manual check: start, print sinfo, stop
    with LocalSlurm() as c:
        print(c.run("sinfo").stdout)
        print(c.run("srun", "-n1", "hostname").stdout)
