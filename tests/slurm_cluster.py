"""A one-node SLURM cluster on localhost in a temporary folder, for tests.

munged (own key and socket), slurmctld and slurmd run in the foreground as children of the test,
as root, with `proctrack/linuxproc`, `task/none` and `select/cons_tres` and one node with this
machine's CPUs. Clients (`sbatch`, `srun`, `scontrol`) find it through `SLURM_CONF`.

    with SlurmCluster(tmp_path) as cluster:
        job_id = cluster.sbatch(["--wrap", "srun hostname"])
        assert cluster.wait(job_id) == "COMPLETED"
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "scancel")
NODE_NAME = socket.gethostname().split(".")[0]  # resolvable: Lightning finds MASTER_ADDR from the node list
PARTITION = "debug"
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})


def why_no_slurm() -> str | None:
    """The reason a local cluster cannot start here (missing programs, not root), or None."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if _which(name) is None]
    if missing:
        return f"SLURM/munge not installed ({', '.join(missing)} missing; .ci/install-slurm.sh installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "the local SLURM cluster runs its daemons as root"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SlurmCluster:
    """One controller + one compute node on localhost; `start()`/`stop()` or use as a context manager.

    Args:
        root: empty folder for the config, state, spool, logs and munge key/socket.
        cpus: CPUs of the node (default: this machine's).
    """

    def __init__(self, root: str | Path, cpus: int | None = None):
        self.root = Path(root)
        self.cpus = cpus or os.cpu_count() or 1
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self._processes: list[subprocess.Popen] = []

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "SlurmCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients: `SLURM_CONF` pointing at this cluster, no SLURM_* from outside."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
        env["SLURM_CONF"] = str(self.conf)
        return env

    def start(self, timeout: float = 30.0) -> None:
        """Write the config, start munged, slurmctld and slurmd, and wait until the node is idle."""
        for folder in ("munge", "state", "spool", "logs"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o711)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._write_config()
        try:
            self._start_daemons(key, timeout)
        except BaseException:
            self.stop()
            raise

    def _start_daemons(self, key: Path, timeout: float) -> None:
        logs = self.root / "logs"
        self._spawn(
            [_which("munged"), "--foreground", "--force", f"--socket={self.munge_socket}", f"--key-file={key}",
             f"--pid-file={self.root / 'munge' / 'munged.pid'}", f"--seed-file={self.root / 'munge' / 'munged.seed'}",
             f"--log-file={logs / 'munged.log'}"],
            logs / "munged.out",
        )
        self._wait_for(self.munge_socket.exists, timeout, "munged did not create its socket")
        self._spawn([_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)], logs / "slurmctld.out")
        self._spawn([_which("slurmd"), "-D", "-N", NODE_NAME, "-f", str(self.conf)], logs / "slurmd.out")
        self._wait_for(lambda: self.node_state() in ("IDLE", "MIXED", "ALLOCATED"), timeout, "the node did not come up")

    def stop(self) -> None:
        """Cancel every job, then stop the daemons (SIGTERM, SIGKILL after 10 s)."""
        if self._processes:
            try:
                subprocess.run([_which("scancel"), "--full", "--partition", PARTITION], env=self.env, capture_output=True, timeout=10)
            except subprocess.TimeoutExpired:
                pass  # the controller is down: stopping the daemons ends the jobs anyway
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self._processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()

    def _spawn(self, argv: Sequence[str], log: Path) -> None:
        with open(log, "ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self._processes.append(process)
        time.sleep(0.2)
        if process.poll() is not None:
            raise RuntimeError(f"{argv[0]} exited with {process.returncode}:\n{self.logs()}")

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            dead = [p.args[0] for p in self._processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited:\n{self.logs()}")
            time.sleep(0.2)
        raise RuntimeError(f"{what} within {timeout:.0f} s:\n{self.logs()}")

    def _write_config(self) -> None:
        root = self.root
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=vmastest",
                    f"SlurmctldHost={NODE_NAME}(127.0.0.1)",
                    "MailProg=/bin/true",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={root / 'state'}",
                    f"SlurmdSpoolDir={root / 'spool'}",
                    f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={root / 'logs' / 'slurmctld.log'}",
                    f"SlurmdLogFile={root / 'logs' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "SchedulerType=sched/backfill",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "KillWait=5",
                    "MinJobAge=600",
                    "SchedulerParameters=sched_interval=1",
                    f"NodeName={NODE_NAME} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    # ------------------------------------------------------------------ clients
    def run(self, argv: Sequence[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """Run a SLURM client (`scontrol ...`) against this cluster; returns the completed process."""
        return subprocess.run([_which(argv[0]) or argv[0], *argv[1:]], env=kwargs.pop("env", self.env),
                              capture_output=True, text=True, check=check, timeout=60, **kwargs)

    def sbatch(self, args: Iterable[str], env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> str:
        """Submit a job (`sbatch --parsable ARGS`) with `env` added to the cluster environment; returns its id."""
        result = self.run(["sbatch", "--parsable", *args], env={**self.env, **(env or {})}, cwd=cwd)
        return result.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, NodeList, StdOut, ...)."""
        out = self.run(["scontrol", "show", "job", "--oneliner", job_id]).stdout
        return dict(field.split("=", 1) for field in out.split() if "=" in field)

    def job_state(self, job_id: str) -> str:
        return self.job(job_id)["JobState"]

    def node_state(self) -> str:
        result = self.run(["scontrol", "show", "node", "--oneliner", NODE_NAME], check=False)
        fields = dict(f.split("=", 1) for f in result.stdout.split() if "=" in f)
        return fields.get("State", "").split("+")[0]

    def wait(self, job_id: str, states: Iterable[str] = FINAL_STATES, timeout: float = 180.0) -> str:
        """Wait until the job is in one of `states`; returns the state (raises TimeoutError with the logs)."""
        states = frozenset(states)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in states:
                return state
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} still {self.job_state(job_id)} after {timeout:.0f} s:\n{self.logs()}")

    def logs(self) -> str:
        """The tail of every daemon log, for failure messages."""
        parts = []
        for log in sorted((self.root / "logs").glob("*")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"== {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)
