"""The onset and flow plugins that `BeatConfig` (`data.beats`) names, built once per process
(`build_plugin`)."""
from __future__ import annotations

import json
from typing import Any

from vmas_lightning.registry import PluginSpec, Registry

_plugins: dict[tuple[str, str], Any] = {}


def build_plugin(registry: Registry, spec: PluginSpec) -> Any:
    """`registry.build(spec)`, built once per process and spec (madmom loads its networks once)."""
    key = (registry.kind, json.dumps(spec, sort_keys=True))
    if key not in _plugins:
        _plugins[key] = registry.build(spec)
    return _plugins[key]
