"""Files written by earlier versions of vmas-lightning, read by this one: every migration in one place.

Each entry names what changed and the files it concerns (shards' `annotation.json`, `vmas
prepare`'s `settings.json`). Remove an entry once no such file needs reading; the readers
(`data.shards.setting_differences`, used by the data module, `vmas prepare` and the ablation
harness) take them from here. Checkpoints need none: the committed demo model was re-made with
the current format, and a checkpoint of an older format is refused in one line.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Shards and `vmas prepare` folders: settings recorded by older versions that no longer decide the
# data, so not compared.
RETIRED_SETTINGS = frozenset({"model.sequence.frames_per_feature", "data.beats.match_window", "data.beats.lam"})
# Shards and `vmas prepare` folders: settings added later, with the value that older files were made with.
ADDED_SETTINGS = {"model.sequence.frame_sampling": "last"}


def current_settings(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """Flat recorded settings as this version compares them with `wanted`: without `RETIRED_SETTINGS`,
    and with the `ADDED_SETTINGS` that `wanted` has and `recorded` lacks."""
    added = {key: value for key, value in ADDED_SETTINGS.items() if key in wanted}
    return {**added, **{key: value for key, value in recorded.items() if key not in RETIRED_SETTINGS}}
