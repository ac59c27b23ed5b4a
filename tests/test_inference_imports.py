"""Inference stands without the trainer: `vmas_lightning.generation` loads a checkpoint and makes
music with every training module blocked from importing."""
import json
import subprocess
import sys

import torch

from helpers import DEMO_CKPT
from vmas_lightning.generation import GenerationConfig, MusicGenerator
from vmas_lightning.generation.checkpoint import load_for_inference

TRAINING = ("lightning", "pytorch_lightning", "vmas_lightning.lit_module", "vmas_lightning.losses", "vmas_lightning.optim",
            "vmas_lightning.callbacks", "vmas_lightning.checkpointing", "vmas_lightning.data.datamodule",
            "vmas_lightning.cli.lightning", "dadaptation")
BLOCKED_RUN = f"""
import importlib.abc, sys
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if any(name == b or name.startswith(b + ".") for b in {TRAINING!r}):
            raise ImportError("inference imported training code: " + name)
sys.meta_path.insert(0, Blocked())
import torch
from vmas_lightning.generation import GenerationConfig, MusicGenerator
from vmas_lightning.generation.checkpoint import load_for_inference
from vmas_lightning.generation.pipeline import Generation
model, sequence, config = load_for_inference(sys.argv[1])
video = torch.arange(3 * 10 * 64 * 64).remainder(251).to(torch.uint8).view(1, 3, 10, 64, 64)
print(MusicGenerator(model, GenerationConfig(seed=7, top_k=50)).generate(video).flatten().tolist())
"""


def test_generation_imports_nothing_from_training():
    run = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(DEMO_CKPT)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    model, _, _ = load_for_inference(DEMO_CKPT)
    video = torch.arange(3 * 10 * 64 * 64).remainder(251).to(torch.uint8).view(1, 3, 10, 64, 64)
    expected = MusicGenerator(model, GenerationConfig(seed=7, top_k=50)).generate(video)
    assert json.loads(run.stdout) == expected.flatten().tolist()  # the same weights, the same music
