"""Reading the sections of a `vmas fit` YAML config outside LightningCLI (curation, beats, profile),
with one-line errors for an unreadable file, a wrong section or an unknown key."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from vmas_lightning.errors import InputFileError, VMASError


def read_config(path: str | Path, what: str = "config") -> dict[str, Any]:
    """A YAML (or JSON) file as a dict (empty file: {}); one-line `InputFileError` naming it as `what`
    when unreadable or not a mapping."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as err:
        raise InputFileError(path, f"cannot read {what} ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise InputFileError(path, f"not valid YAML ({' '.join(str(err).split())})") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise InputFileError(path, f"{what} must be a mapping, got a {type(config).__name__}")
    return config


def read_configs(paths: str | Path | Sequence[str | Path]) -> dict[str, Any]:
    """Config files merged in order as `vmas fit --config A --config B` stacks them: a later file's
    mappings update the earlier ones key by key, anything else (a list, a value) replaces."""
    def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(base)
        for key, value in update.items():
            both = isinstance(value, Mapping) and isinstance(merged.get(key), Mapping)
            merged[key] = merge(merged[key], value) if both else value
        return merged

    config: dict[str, Any] = {}
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        config = merge(config, read_config(path))
    return config


def config_section(config: Mapping[str, Any], key: str, path: str | Path) -> Mapping[str, Any]:
    """`config[key]` as a mapping ({} when absent or null); one-line `VMASError` otherwise."""
    section = config.get(key)
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise VMASError(f"{path}: '{key}' must be a mapping, got {type(section).__name__} {section!r}")
    return section


def dataclass_from(kind: type, values: Mapping[str, Any] | None, where: str) -> Any:
    """`kind(**values)` (None: the defaults); one-line `VMASError` on a non-mapping or an unknown key."""
    known = sorted(f.name for f in fields(kind))
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise VMASError(f"{where} must be a mapping of {', '.join(known)}, got {type(values).__name__} {values!r}")
    unknown = sorted(set(values) - set(known), key=str)
    if unknown:
        raise VMASError(f"{where} has no key {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
    return kind(**values)
