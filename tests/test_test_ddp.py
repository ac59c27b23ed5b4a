"""`vmas test` on 2 CPU processes (gloo) writes the same metrics.json as on 1 process."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TINY_CONFIG
from vmas_lightning.cli.main import main


@pytest.mark.slow
def test_two_processes_give_the_one_process_metrics(demo_data, tmp_path):
    assert main(["fit", "--config", str(TINY_CONFIG), "--data.root", str(demo_data), "--data.num_workers", "0",
                 "--trainer.default_root_dir", str(tmp_path / "train"), "--trainer.max_steps", "1",
                 "--model.num_audio_samples", "0", "--trainer.limit_val_batches", "1"]) == 0
    ckpt = next((tmp_path / "train").glob("lightning_logs/version_*/checkpoints/last.ckpt"))
    vmas = Path(sys.executable).parent / "vmas"
    metrics = {}
    for devices in (1, 2):
        out = tmp_path / f"devices{devices}"
        subprocess.run(
            [vmas, "test", "--config", str(TINY_CONFIG), "--data.root", str(demo_data), "--data.num_workers", "0",
             "--data.batch_size", "2", "--trainer.devices", str(devices), "--trainer.strategy", "ddp",
             "--trainer.default_root_dir", str(out), "--model.evaluation.output_dir", str(out), "--ckpt_path", str(ckpt)],
            check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600,
        )
        metrics[devices] = json.loads((out / "metrics.json").read_text())
        assert (out / "clips.csv").read_text().count("\n") == 5
    assert metrics[1]["num_clips"] == metrics[2]["num_clips"] == 4
    for key in ("fad", "kl", "kl_gen_ref", "mv_align", "recall@1", "recall@10"):
        assert abs(metrics[1][key] - metrics[2][key]) <= 1e-6 * max(1.0, abs(metrics[1][key])), key
