"""Crash safety: atomic checkpoint writes, the resume pick, and a tiny run killed with SIGKILL that
resumes to the same weights and the same samples as a run that was never interrupted.

`StepRecorder` and `KillAtStep` are Lightning callbacks the tests inject into `vmas fit` runs
(`PYTHONPATH=tests`, class path `test_resume.StepRecorder`); test_multiprocess and test_slurm use them too.
"""
from __future__ import annotations

import atexit
import functools
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import lightning as L
import pytest
import torch

from helpers import ROOT, TINY_CONFIG as TINY
from vmas_lightning.checkpointing import AtomicCheckpointIO, latest_checkpoint, main as checkpointing_main


# ---------------------------------------------------------------------------------------- probes
class StepRecorder(L.Callback):
    """Appends one JSON line per optimizer step to `<folder>/steps-rank<R>.jsonl`: rank, world size,
    SLURM restart count, global step and the clip ids of the batch.

    `pause_at` maps a SLURM restart count to a step: on that start, sleep `pause_s` when the step
    begins, so a test can requeue or signal a job that is running and has checkpoints.
    """

    def __init__(self, folder: str, pause_at: Optional[dict[int, int]] = None, pause_s: float = 120.0):
        self.folder = Path(folder)
        self.pause_at = pause_at or {}
        self.pause_s = pause_s

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.pause_at.get(int(os.environ.get("SLURM_RESTART_COUNT", "0"))) == trainer.global_step:
            time.sleep(self.pause_s)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "restart": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
            "step": trainer.global_step,
            "ids": list(batch["id"]),
        }
        with open(self.folder / f"steps-rank{trainer.global_rank}.jsonl", "a") as out:
            out.write(json.dumps(record) + "\n")


class KillAtStep(L.Callback):
    """SIGKILLs its own process when optimizer step `step` begins (after step `step`'s checkpoint)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def read_steps(folder: Path, rank: int = 0) -> list[dict[str, Any]]:
    path = Path(folder) / f"steps-rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------------------------------- shared runs
DEMO_DATA_ARGS = ("--num-train", "8", "--num-val", "2", "--num-test", "2")  # 4 steps an epoch at batch 2


@functools.cache
def demo_data() -> Path:
    """Demo data for the tiny config, made once per test session (removed at exit)."""
    root = tempfile.mkdtemp(prefix="vmas-demo-")
    atexit.register(shutil.rmtree, root, True)
    out = Path(root) / "data"
    subprocess.run(vmas_command("demo-data", "--config", str(TINY), "--out", str(out), *DEMO_DATA_ARGS),
                   check=True, capture_output=True, text=True, env=probe_env(), timeout=300)
    return out


def vmas_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmas_lightning.cli.main", *args]


def probe_env() -> dict[str, str]:
    """Environment for `vmas` subprocesses: the probes importable, one thread, no SLURM variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests"), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def write_run_config(path: Path, max_steps: int, probes: list[dict[str, Any]]) -> Path:
    """A config fragment over configs/tiny.yaml for short test runs: a checkpoint every step
    (atomic), EMA, no validation, demo data, `probes` as extra callbacks.

    jsonargparse merges a callback list of the same length item by item, so every option of the
    tiny config's callbacks that must change is set here explicitly (monitor: null)."""
    config = {
        "trainer": {
            "max_steps": max_steps,
            "limit_val_batches": 0,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "plugins": ["vmas_lightning.checkpointing.AtomicCheckpointIO"],
            "callbacks": [
                {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                 "init_args": {"monitor": None, "save_last": True, "save_top_k": 0, "every_n_train_steps": 1}},
                {"class_path": "vmas_lightning.callbacks.EMA", "init_args": {"decay": 0.9}},
                *probes,
            ],
        },
        "model": {"num_audio_samples": 0},
        "data": {"root": str(demo_data()), "batch_size": 2, "num_workers": 0},
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def fixed_run_dir_args(run_dir: Path) -> list[str]:
    """The run-folder options slurm/train_4node.sh passes: logs and checkpoints/ straight in run_dir."""
    return ["--trainer.default_root_dir", str(run_dir),
            "--trainer.logger", "lightning.pytorch.loggers.TensorBoardLogger",
            "--trainer.logger.save_dir", str(run_dir), "--trainer.logger.name", "", "--trainer.logger.version", ""]


def fit(run_dir: Path, config: Path, *extra: str, expect_rc: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(
        vmas_command("fit", "--config", str(TINY), "--config", str(config), *fixed_run_dir_args(run_dir), *extra),
        capture_output=True, text=True, env=probe_env(), timeout=300,
    )
    assert result.returncode == expect_rc, result.stderr[-4000:]
    return result


# ---------------------------------------------------------------------------------------- atomic writes
def _save_forever(path: str) -> None:
    """Child process: save ever larger step counters to `path` until killed."""
    io = AtomicCheckpointIO()
    step = 0
    while True:
        step += 1
        io.save_checkpoint({"step": step, "weights": torch.full((2_000_000,), float(step))}, path)


@pytest.mark.slow  # 20 s on 2 cores
def test_checkpoint_killed_while_writing_is_never_half_written(tmp_path):
    """SIGKILL a writer many times mid-save: `last.ckpt` always loads whole and self-consistent."""
    target = tmp_path / "checkpoints" / "last.ckpt"
    context = multiprocessing.get_context("spawn")  # a fork of this threaded process can deadlock
    for attempt in range(4):
        before = target.stat().st_mtime_ns if target.exists() else None
        writer = context.Process(target=_save_forever, args=(str(target),))
        writer.start()
        deadline = time.monotonic() + 120  # a spawned writer imports torch first: wait for its first save
        while (not target.exists() or target.stat().st_mtime_ns == before) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05 + 0.037 * attempt)  # land somewhere inside a write
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        checkpoint = torch.load(target)
        assert checkpoint["step"] >= 1
        assert torch.equal(checkpoint["weights"], torch.full((2_000_000,), float(checkpoint["step"])))
    # The killed writers' temporary files are hidden, never taken for a checkpoint, and cleaned by the next save.
    assert [p.name for p in target.parent.glob("last*.ckpt")] == ["last.ckpt"]
    AtomicCheckpointIO().save_checkpoint({"step": 0}, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]
    assert torch.load(target) == {"step": 0}


def test_latest_checkpoint_is_the_newest_last_or_hpc(tmp_path, capsys):
    run = tmp_path / "run"
    assert latest_checkpoint(run) is None
    files = {
        "checkpoints/last.ckpt": 100,
        "checkpoints/epoch=0-step=9.ckpt": 500,  # top-k checkpoint: never a resume point
        "checkpoints/.last.ckpt.123.tmp": 600,  # a killed writer's leftover
        "hpc_ckpt_1.ckpt": 50,
        "hpc_ckpt_2.ckpt": 200,
    }
    for name, mtime in files.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_bytes(b"x")
        os.utime(run / name, (mtime, mtime))
    assert latest_checkpoint(run) == run / "hpc_ckpt_2.ckpt"
    os.utime(run / "checkpoints/last.ckpt", (300, 300))
    assert latest_checkpoint(run) == run / "checkpoints/last.ckpt"
    assert checkpointing_main([str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "checkpoints/last.ckpt")
    assert checkpointing_main([str(tmp_path / "new")]) == 0
    assert capsys.readouterr().out.strip() == "null"


# ---------------------------------------------------------------------------------------- kill and resume
def _final_state(run_dir: Path) -> dict[str, Any]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


@pytest.mark.slow
def test_sigkill_and_resume_equals_uninterrupted_run(tmp_path):
    """N steps straight == N/2 steps, SIGKILL, resume from last.ckpt, N/2 more: same weights, EMA,
    optimizer state and global step (within 1e-6), and the same clips in the same order."""
    steps, kill_at = 6, 3
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    def recorder(folder: Path) -> dict[str, Any]:
        return {"class_path": "test_resume.StepRecorder", "init_args": {"folder": str(folder)}}

    kill = {"class_path": "test_resume.KillAtStep", "init_args": {"step": kill_at}}
    config_straight = write_run_config(tmp_path / "straight.json", steps, [recorder(straight)])
    config_first = write_run_config(tmp_path / "first.json", steps, [recorder(killed), kill])
    config_resume = write_run_config(tmp_path / "resume.json", steps, [recorder(killed)])

    fit(straight, config_straight)
    fit(killed, config_first, expect_rc=-signal.SIGKILL)
    resume_from = latest_checkpoint(killed)
    assert resume_from == killed / "checkpoints" / "last.ckpt"
    assert torch.load(resume_from, weights_only=False)["global_step"] == kill_at
    fit(killed, config_resume, "--ckpt_path", str(resume_from))

    a, b = _final_state(straight), _final_state(killed)
    assert a["global_step"] == b["global_step"] == steps
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for name, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], value, rtol=0, atol=1e-6, msg=name)
    for state_a, state_b in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        for key, value in state_a.items():
            torch.testing.assert_close(state_b[key], value, rtol=0, atol=1e-6)
    steps_straight, steps_killed = read_steps(straight), read_steps(killed)
    assert [r["step"] for r in steps_straight] == list(range(1, steps + 1))
    assert [r["step"] for r in steps_killed] == list(range(1, steps + 1))  # resumed at kill_at + 1, not 1
    assert [r["ids"] for r in steps_killed] == [r["ids"] for r in steps_straight]
