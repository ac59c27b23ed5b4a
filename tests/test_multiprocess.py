"""Several processes without SLURM: the tiny config trained by 2 CPU ranks (DDP over gloo), launched
by Lightning itself and by torchrun; both ranks train on disjoint clips and agree on the step count."""
from __future__ import annotations

import subprocess
import sys

import pytest

from test_resume import TINY, fixed_run_dir_args, probe_env, read_steps, vmas_command, write_run_config

STEPS = 2


def _launch(launcher: str, run_dir, config) -> list[str]:
    fit = ["fit", "--config", str(TINY), "--config", str(config), *fixed_run_dir_args(run_dir),
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    if launcher == "lightning":
        return vmas_command(*fit)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "vmas_lightning.cli.main", *fit]


@pytest.mark.slow  # 32 s (lightning) and more (torchrun) on 2 cores
@pytest.mark.parametrize("launcher", ["lightning", "torchrun"])
def test_two_cpu_ranks_train_on_disjoint_clips(launcher, tmp_path):
    probe = {"class_path": "test_resume.StepRecorder", "init_args": {"folder": str(tmp_path / "steps")}}
    config = write_run_config(tmp_path / "ddp.json", STEPS, [probe])
    result = subprocess.run(_launch(launcher, tmp_path / "run", config), capture_output=True, text=True,
                            env=probe_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]

    ranks = [read_steps(tmp_path / "steps", rank) for rank in (0, 1)]
    for records in ranks:
        assert [r["step"] for r in records] == list(range(1, STEPS + 1))
        assert {r["world_size"] for r in records} == {2}
    ids = [[clip for r in records for clip in r["ids"]] for records in ranks]
    assert ids[0] and ids[1] and not set(ids[0]) & set(ids[1])  # each rank streams its own part
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
