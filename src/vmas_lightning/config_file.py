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


# Fields typed as a plugin spec (`registry.spec_type`): a later config's spec replaces the earlier one
# whole, as the LightningCLI parser does (options of one plugin mean nothing to another); tests check
# this rule against the parser on the stacks of configs/.
PLUGIN_SPEC_FIELDS = frozenset({"encoder", "decoder", "codec", "embedder", "classifier", "onset_detector", "optical_flow",
                                "separator"})


def stack_configs(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`update` over `base` as `vmas fit --config BASE --config UPDATE` stacks them: mappings merge key
    by key, except plugin specs (`PLUGIN_SPEC_FIELDS`), lists and values, which replace."""
    merged = dict(base)
    for key, value in update.items():
        both = isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and key not in PLUGIN_SPEC_FIELDS
        merged[key] = stack_configs(merged[key], value) if both else value
    return merged


def read_configs(paths: str | Path | Sequence[str | Path]) -> dict[str, Any]:
    """Config files stacked in order (`stack_configs`), as `vmas fit --config A --config B` reads them."""
    config: dict[str, Any] = {}
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        config = stack_configs(config, read_config(path))
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
