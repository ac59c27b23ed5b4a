"""Load a trained `VMASModule` checkpoint for generation, with the EMA weights when it has them.

Lightning's `EMAWeightAveraging` callback writes the averaged weights to the checkpoint's
`state_dict` and the raw training weights to `current_model_state` (see
`lightning/pytorch/callbacks/weight_averaging.py`, `on_save_checkpoint`), so loading `state_dict`
gives the EMA model whenever the callback was on.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from vmas_lightning.errors import MissingWeightsError, VMASError


def load_for_inference(ckpt_path: str | Path, device: str | torch.device = "cpu"):
    """`(VMASModel, SequenceConfig, GenerationConfig)` from a `VMASModule` checkpoint, in eval mode on `device`."""
    from vmas_lightning.lit_module import VMASModule

    path = Path(ckpt_path)
    if not path.is_file():
        raise VMASError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # pickle, zip and torch errors all mean "not a checkpoint"
        raise VMASError(f"{path}: not a readable checkpoint ({type(err).__name__}: {' '.join(str(err).split())})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise VMASError(f"{path}: not a VMASModule checkpoint (no state_dict/hyper_parameters)")
    hparams = checkpoint["hyper_parameters"]
    load = dict(checkpoint_path=path, map_location="cpu", weights_only=False)
    try:
        try:
            module = VMASModule.load_from_checkpoint(**load)
        except MissingWeightsError:
            # Every weight is in the checkpoint: build the networks without their pretrained sources.
            overrides = {
                key: {**hparams[key], "pretrained": None}
                for key in ("encoder", "decoder", "codec")
                if isinstance(hparams.get(key), Mapping) and hparams[key].get("pretrained")
            }
            module = VMASModule.load_from_checkpoint(**load, **overrides)
    except RuntimeError as err:
        raise VMASError(f"{path}: weights do not fit the model of its hyper-parameters ({str(err).splitlines()[0]})") from None
    model = module.model.to(device).eval()
    return model, model.sequence, module.generation_config
