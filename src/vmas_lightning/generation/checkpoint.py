"""Load a trained `VMASModule` checkpoint for generation, with the EMA weights when it has them.

Lightning's `EMAWeightAveraging` callback writes the averaged weights to the checkpoint's
`state_dict` and the raw training weights to `current_model_state` (see
`lightning/pytorch/callbacks/weight_averaging.py`, `on_save_checkpoint`), so loading `state_dict`
gives the EMA model whenever the callback was on.

The file is read once, with `torch.load(weights_only=True)` (no code in it runs), and each part
that recorded `rebuild_options` (the built-in encoders, decoder and codec) is rebuilt without its
pretrained source (e.g. the decoder from its recorded transformers config): nothing is downloaded
or read but the checkpoint (and, for a model with the `t5` text conditioner, its tokenizer, from the
hub id or folder it was trained with).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import torch

from vmas_lightning.config import (
    ContrastiveConfig, EvaluationConfig, GenerationConfig, LossConfig, ModelConfig, OptimConfig,
)
from vmas_lightning.config_file import load_config
from vmas_lightning.errors import VMASError
from vmas_lightning.models.vmas import VMASModel
from vmas_lightning.sequence import SequenceConfig

# The dataclasses a checkpoint's hyper-parameters may hold (a Trainer pickles them; LightningCLI saves dicts).
HPARAM_CLASSES = (SequenceConfig, GenerationConfig, LossConfig, ContrastiveConfig, OptimConfig, EvaluationConfig)


def read_checkpoint(ckpt_path: str | Path) -> dict:
    """A `VMASModule` checkpoint (or `vmas export` file) read on the CPU with `weights_only=True`;
    one-line `VMASError` for a missing, unreadable or foreign file."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise VMASError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(list(HPARAM_CLASSES)):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors, and objects that are not weights, all mean "not a checkpoint"
        raise VMASError(f"{path}: not a readable checkpoint ({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise VMASError(f"{path}: not a VMASModule checkpoint (no state_dict/hyper_parameters)")
    return checkpoint


def model_settings(checkpoint: dict, path: str | Path) -> ModelConfig:
    """A `VMASModule` checkpoint's `model:` section, with what rebuilds each part without its pretrained
    source (`rebuild_options`), read by the one config parser (`config_file.load_config`); one line
    naming the file when this version cannot read its settings."""
    # Plain values (LightningCLI saves dicts, a Trainer the dataclasses) without LightningCLI's _instantiator / _class_path.
    hparams = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v
               for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    if missing := [key for key in ("encoder", "decoder", "codec") if key not in hparams]:
        raise VMASError(f"{path}: not a VMASModule checkpoint (no hyper-parameter {', '.join(missing)})")
    for key, options in checkpoint.get("rebuild_options", {}).items():  # every weight is in the checkpoint
        hparams[key] = {**(hparams[key] if isinstance(hparams[key], Mapping) else {"name": hparams[key]}), **options}
    return load_config({"model": hparams}, trainer=False, name=f"{path}: its model settings").model


def load_for_inference(ckpt_path: str | Path, device: str | torch.device = "cpu"):
    """`(VMASModel, SequenceConfig, GenerationConfig)` from a `VMASModule` checkpoint, in eval mode on
    `device`: the network alone is built, from the recorded settings (nothing of training is imported)."""
    path = Path(ckpt_path)
    checkpoint = read_checkpoint(path)
    config = model_settings(checkpoint, path)
    weights = {key[len("model."):]: value for key, value in checkpoint["state_dict"].items() if key.startswith("model.")}
    try:
        model = VMASModel(config.encoder, config.decoder, config.codec, config.sequence, config.cond_dropout,
                          text=config.text, text_dropout=config.text_dropout)
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise VMASError(f"{path}: weights do not fit the model of its hyper-parameters ({str(err).splitlines()[0]})") from None
    model = model.to(device).eval()
    return model, model.sequence, config.generation
