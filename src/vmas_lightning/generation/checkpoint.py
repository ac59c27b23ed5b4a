"""Load a trained `VMASModule` checkpoint for generation, with the EMA weights when it has them.

Lightning's `EMAWeightAveraging` callback writes the averaged weights to the checkpoint's
`state_dict` and the raw training weights to `current_model_state` (see
`lightning/pytorch/callbacks/weight_averaging.py`, `on_save_checkpoint`), so loading `state_dict`
gives the EMA model whenever the callback was on.

The file is read once, with `torch.load(weights_only=True)` (no code in it runs), and each part
that recorded `rebuild_options` (the built-in encoders, decoder and codec) is rebuilt without its
pretrained source (e.g. the decoder from its recorded transformers config): nothing is downloaded
or read but the checkpoint.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from pathlib import Path

import torch
from lightning.pytorch.cli import instantiate_module

from vmas_lightning.errors import VMASError

def hparam_classes() -> list[type]:
    """The dataclasses a `VMASModule` checkpoint's hyper-parameters hold (its config arguments, nested)."""
    from vmas_lightning.lit_module import VMASModule

    found: list[type] = []
    todo = [p.default for p in inspect.signature(VMASModule.__init__).parameters.values()]
    while todo:
        value = todo.pop()
        if dataclasses.is_dataclass(value) and type(value) not in found:
            found.append(type(value))
            todo += [getattr(value, f.name) for f in dataclasses.fields(value)]
    return found


def read_checkpoint(ckpt_path: str | Path) -> dict:
    """A `VMASModule` checkpoint (or `vmas export` file) read on the CPU with `weights_only=True`;
    one-line `VMASError` for a missing, unreadable or foreign file."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise VMASError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(hparam_classes()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors, and objects that are not weights, all mean "not a checkpoint"
        raise VMASError(f"{path}: not a readable checkpoint ({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise VMASError(f"{path}: not a VMASModule checkpoint (no state_dict/hyper_parameters)")
    return checkpoint


def load_for_inference(ckpt_path: str | Path, device: str | torch.device = "cpu"):
    """`(VMASModel, SequenceConfig, GenerationConfig)` from a `VMASModule` checkpoint, in eval mode on `device`."""
    from vmas_lightning.lit_module import VMASModule

    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    # Plain values (LightningCLI saves dicts, a Trainer the dataclasses) without LightningCLI's _instantiator / _class_path.
    hparams = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
               for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    # Checkpoints written before the encoder alone stated it (the committed demo model among them)
    # record `model.sequence.frames_per_feature`, a value the encoder's always replaced: drop it.
    if isinstance(hparams.get("sequence"), Mapping):
        hparams["sequence"] = {k: v for k, v in hparams["sequence"].items() if k != "frames_per_feature"}
    for key, options in checkpoint.get("rebuild_options", {}).items():  # every weight is in the checkpoint
        hparams[key] = {**(hparams[key] if isinstance(hparams[key], Mapping) else {"name": hparams[key]}), **options}
    try:
        module = instantiate_module(VMASModule, hparams)  # as Lightning's load_from_checkpoint does, from the one read
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise VMASError(f"{path}: weights do not fit the model of its hyper-parameters ({str(err).splitlines()[0]})") from None
    model = module.model.to(device).eval()
    return model, model.sequence, module.generation_config
