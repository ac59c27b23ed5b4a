"""The real `slurm/train_4node.sh` on a real (one-node, localhost) SLURM cluster.

Submitted with CPU overrides (1 node, 2 tasks, no GPUs, tiny config, demo data): both ranks train
and checkpoint; `scontrol requeue` of the running job restarts it and the second start resumes from
`checkpoints/last.ckpt`; SLURM's pre-timeout SIGUSR1 makes Lightning save `hpc_ckpt_1.ckpt` and
requeue the job, and the third start resumes from that and finishes. Skipped with the reason when
slurmctld/slurmd/munged are not installed (`.ci/install-slurm.sh` installs them).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import ROOT
from slurm_cluster import FINAL_STATES, SlurmCluster, why_no_slurm
from test_resume import TINY, probe_env, read_steps, write_run_config
from vmas_lightning.checkpointing import latest_checkpoint

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TRAIN_SCRIPT = ROOT / "slurm" / "train_4node.sh"
VMAS = Path(sys.executable).parent / "vmas"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_no_slurm()
    if reason:
        pytest.skip(reason)
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def _wait_until(condition, timeout: float, what: str, cluster: SlurmCluster, job_id: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        state = cluster.job_state(job_id)
        if state in FINAL_STATES:
            pytest.fail(f"job {job_id} {state} before {what}:\n{_failure_report(cluster, job_id)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s (job {state}):\n{_failure_report(cluster, job_id)}")
        time.sleep(0.5)


def _job_output(cluster: SlurmCluster, job_id: str) -> str:
    out = Path(cluster.job(job_id)["StdOut"])
    return out.read_text(errors="replace") if out.exists() else "(no job output)"


def _failure_report(cluster: SlurmCluster, job_id: str) -> str:
    return _job_output(cluster, job_id)[-6000:] + "\n" + cluster.logs()


def _checkpoint_step(run_dir: Path) -> int:
    path = latest_checkpoint(run_dir)
    return -1 if path is None else torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def _release_when_pending(cluster: SlurmCluster, job_id: str) -> None:
    """After a requeue: start the job again now instead of after SLURM's requeue hold-off."""
    _wait_until(lambda: cluster.job_state(job_id) == "PENDING", 60, "pending job after the requeue", cluster, job_id)
    cluster.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"])


def _paused_at(cluster: SlurmCluster, job_id: str, probe_dir: Path, run_dir: Path, restart: int, step: int) -> None:
    """Wait until both ranks of start `restart` have done `step` steps and its checkpoint is written."""
    def ready() -> bool:
        done = [[r["step"] for r in read_steps(probe_dir, rank) if r["restart"] == restart] for rank in (0, 1)]
        return all(steps and steps[-1] == step for steps in done) and _checkpoint_step(run_dir) == step

    _wait_until(ready, 240, f"checkpoint at step {step} of start {restart}", cluster, job_id)
    assert cluster.job_state(job_id) == "RUNNING"


def test_train_script_resumes_after_requeue_and_preemption(cluster, tmp_path):
    """Start 0 is requeued by `scontrol requeue` at step 2 (resume: checkpoints/last.ckpt); start 1
    gets SLURM's pre-timeout SIGUSR1 at step 4, on which Lightning saves hpc_ckpt_1.ckpt and requeues
    the job itself (resume: the hpc checkpoint); start 2 trains to the end."""
    steps = 6
    run_dir, probe_dir = tmp_path / "run", tmp_path / "steps"
    probe = {"class_path": "test_resume.StepRecorder",
             "init_args": {"folder": str(probe_dir), "pause_at": {0: 2, 1: 4}}}
    overrides = write_run_config(tmp_path / "slurm_test.json", steps, [probe])
    env = {
        **probe_env(),
        "CONFIG": f"{TINY} {overrides}",
        "RUN_DIR": str(run_dir),
        "ACCELERATOR": "cpu",
        "VMAS": str(VMAS),
        "PYTHON": sys.executable,
    }
    job_id = cluster.sbatch(
        ["--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1", "--time=00:10:00",
         "--job-name=vmas-ci", f"--output={tmp_path / 'job-%j.out'}", str(TRAIN_SCRIPT)],
        env=env, cwd=ROOT,
    )

    _paused_at(cluster, job_id, probe_dir, run_dir, restart=0, step=2)
    cluster.run(["scontrol", "requeue", job_id])
    _release_when_pending(cluster, job_id)

    _paused_at(cluster, job_id, probe_dir, run_dir, restart=1, step=4)
    cluster.run(["scancel", "--signal=USR1", job_id])  # what --signal=SIGUSR1@90 sends before the time limit
    _release_when_pending(cluster, job_id)
    assert cluster.wait(job_id, timeout=240) == "COMPLETED", _failure_report(cluster, job_id)

    assert cluster.job(job_id)["Restarts"] == "2"
    for rank in (0, 1):
        records = read_steps(probe_dir, rank)
        assert {r["world_size"] for r in records} == {2}
        by_start = [[r["step"] for r in records if r["restart"] == restart] for restart in (0, 1, 2)]
        assert by_start == [[1, 2], [3, 4], [5, 6]], records  # every start continues, none from step 1
    assert _checkpoint_step(run_dir) == steps
    output = _job_output(cluster, job_id)
    hpc_checkpoint = run_dir / "hpc_ckpt_1.ckpt"
    assert hpc_checkpoint.is_file()
    assert "start 0: 1 node(s) x 2 cpu" in output and "resume from null" in output
    assert f"resume from {run_dir / 'checkpoints' / 'last.ckpt'}" in output
    assert f"resume from {hpc_checkpoint}" in output
