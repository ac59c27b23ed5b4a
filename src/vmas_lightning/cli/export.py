"""`vmas export`: an inference-only copy of a training checkpoint (weights and hyper-parameters), read
as inference reads it (`generation.checkpoint`: its model settings by the one config parser)."""
from __future__ import annotations

import json
from pathlib import Path

from jsonargparse import ArgumentParser

from vmas_lightning.errors import InputFileError
from vmas_lightning.files import atomic_torch_save
from vmas_lightning.generation.checkpoint import model_settings, read_checkpoint

HELP = "Write an inference-only copy of a checkpoint: EMA weights and hyper-parameters, no optimizer or loader state."
# What `vmas test/generate/predict` read; with EMA on, `state_dict` already holds the averaged weights.
KEPT_KEYS = ("state_dict", "hyper_parameters", "rebuild_options", "pytorch-lightning_version", "epoch", "global_step")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas export", description=HELP)
    parser.add_argument("--ckpt", required=True, help="Checkpoint written by vmas fit.")
    parser.add_argument("--out", required=True, help="File to write.")
    return parser


def run(cfg) -> int:
    checkpoint = read_checkpoint(cfg.ckpt)
    model_settings(checkpoint, cfg.ckpt)  # read by the one config parser: a file this version cannot read is refused
    out = Path(cfg.out)
    try:
        atomic_torch_save({key: checkpoint[key] for key in KEPT_KEYS if key in checkpoint}, out)
    except OSError as err:
        raise InputFileError(out, f"cannot write ({err.strerror or err})") from None
    print(json.dumps({"out": str(out), "bytes": out.stat().st_size, "global_step": checkpoint.get("global_step")}))
    return 0
