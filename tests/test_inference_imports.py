"""Inference stands without the trainer: `vmas_lightning.generation` loads a checkpoint, reads a config
file (the beats' settings) and makes music with every training module blocked from importing."""
import json
import subprocess
import sys

import torch

from helpers import DEMO_CKPT, ROOT, TINY_CONFIG
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
from vmas_lightning.generation.pipeline import Generation, GenerationOptions
assert Generation(GenerationOptions(ckpt=sys.argv[1], beats_config=[sys.argv[2]])).beats.peak_window == 25  # a config read too
model, sequence, config = load_for_inference(sys.argv[1])
video = torch.arange(3 * 10 * 64 * 64).remainder(251).to(torch.uint8).view(1, 3, 10, 64, 64)
print(MusicGenerator(model, GenerationConfig(seed=7, top_k=50)).generate(video).flatten().tolist())
"""


def test_generation_imports_nothing_from_training():
    run = subprocess.run([sys.executable, "-c", BLOCKED_RUN, str(DEMO_CKPT), str(TINY_CONFIG)], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    model, _, _ = load_for_inference(DEMO_CKPT)
    video = torch.arange(3 * 10 * 64 * 64).remainder(251).to(torch.uint8).view(1, 3, 10, 64, 64)
    expected = MusicGenerator(model, GenerationConfig(seed=7, top_k=50)).generate(video)
    assert json.loads(run.stdout) == expected.flatten().tolist()  # the same weights, the same music


def imported_packages() -> dict[str, set[str]]:
    """Part of `vmas_lightning` (a subpackage, or a top-level module) -> the other parts it imports."""
    import ast

    src = ROOT / "src" / "vmas_lightning"

    def part(module: str) -> str:
        name = module.split(".")[1] if "." in module else module
        return name if (src / name).is_dir() else f"{name}.py"

    parts: dict[str, set[str]] = {}
    for path in src.rglob("*.py"):
        module = ".".join(path.relative_to(src.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("vmas_lightning.") and part(name) != part(module):
                    parts.setdefault(part(module), set()).add(part(name))
    return parts


def test_no_part_of_the_package_imports_one_that_imports_it_back():
    parts = imported_packages()
    assert parts["config.py"] and "config.py" in parts["data"]  # the scan sees imports
    cycles = sorted((a, b) for a, imported in parts.items() for b in imported if a in parts.get(b, set()))
    assert cycles == []
