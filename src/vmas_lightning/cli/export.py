"""`vmas export`: an inference-only copy of a training checkpoint (weights and hyper-parameters), whose
model settings are first read by the one config parser (`config_file.load_config`)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from jsonargparse import ArgumentParser

from vmas_lightning.config_file import load_config
from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.files import atomic_torch_save

HELP = "Write an inference-only copy of a checkpoint: EMA weights and hyper-parameters, no optimizer or loader state."
# What `vmas test/generate/predict` read; with EMA on, `state_dict` already holds the averaged weights.
KEPT_KEYS = ("state_dict", "hyper_parameters", "rebuild_options", "pytorch-lightning_version", "epoch", "global_step")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas export", description=HELP)
    parser.add_argument("--ckpt", required=True, help="Checkpoint written by vmas fit.")
    parser.add_argument("--out", required=True, help="File to write.")
    return parser


def run(cfg) -> int:
    source = Path(cfg.ckpt)
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputFileError(source, "checkpoint not found") from None
    except Exception as err:  # truncated, not a checkpoint, pickled objects
        raise InputFileError(source, f"not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise InputFileError(source, "not a vmas fit checkpoint (no state_dict/hyper_parameters)")
    settings = {key: value for key, value in checkpoint["hyper_parameters"].items() if not key.startswith("_")}
    try:  # the model section, read by the one config parser: a file whose settings this version cannot read is refused
        load_config({"model": settings}, trainer=False)
    except VMASError as err:
        raise InputFileError(source, f"its model settings are not this version's ({err})") from None
    out = Path(cfg.out)
    try:
        atomic_torch_save({key: checkpoint[key] for key in KEPT_KEYS if key in checkpoint}, out)
    except OSError as err:
        raise InputFileError(out, f"cannot write ({err.strerror or err})") from None
    print(json.dumps({"out": str(out), "bytes": out.stat().st_size, "global_step": checkpoint.get("global_step")}))
    return 0
