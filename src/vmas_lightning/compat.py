"""Files written by earlier versions of vmas-lightning, read by this one: every migration in one place.

Each entry names what changed and the files it concerns (checkpoints; shards' `annotation.json`;
`vmas prepare`'s `settings.json`). Remove an entry once no such file needs reading; the readers
(`generation.checkpoint`, `data.shards`, `data.prepare`) take them from here.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Checkpoints: the settings dataclasses were pickled under the modules they lived in before
# `vmas_lightning.config` (class name -> former module); `torch.load` is told both names.
FORMER_CLASS_MODULES = {"LossConfig": "vmas_lightning.lit_module", "ContrastiveConfig": "vmas_lightning.lit_module",
                        "EvaluationConfig": "vmas_lightning.lit_module", "OptimConfig": "vmas_lightning.optim"}
# Checkpoints: hyper-parameters that are no longer settings, dropped when read (section -> keys).
# `sequence.frames_per_feature`: the encoder alone states it now (the committed demo model records it).
RETIRED_HPARAMS = {"sequence": ("frames_per_feature",)}
# Shards and `vmas prepare` folders: settings recorded by older versions that no longer decide the
# data, so not compared.
RETIRED_SETTINGS = frozenset({"model.sequence.frames_per_feature", "data.beats.match_window", "data.beats.lam"})
# Shards and `vmas prepare` folders: settings added later, with the value that older files were made with.
ADDED_SETTINGS = {"model.sequence.frame_sampling": "last"}


def former_class_names(classes: tuple[type, ...]) -> list[tuple[type, str]]:
    """`(class, "former.module.Name")` for each of `classes` that was pickled under another module."""
    return [(cls, f"{FORMER_CLASS_MODULES[cls.__name__]}.{cls.__name__}") for cls in classes if cls.__name__ in FORMER_CLASS_MODULES]


def current_hparams(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's plain hyper-parameters without `RETIRED_HPARAMS`."""
    return {key: {k: v for k, v in value.items() if k not in RETIRED_HPARAMS[key]}
            if key in RETIRED_HPARAMS and isinstance(value, Mapping) else value for key, value in hparams.items()}


def current_settings(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """Flat recorded settings as this version compares them with `wanted`: without `RETIRED_SETTINGS`,
    and with the `ADDED_SETTINGS` that `wanted` has and `recorded` lacks."""
    added = {key: value for key, value in ADDED_SETTINGS.items() if key in wanted}
    return {**added, **{key: value for key, value in recorded.items() if key not in RETIRED_SETTINGS}}
