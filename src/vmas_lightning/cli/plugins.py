"""`vmas plugins`: list every plugin kind and its registered names."""
from __future__ import annotations

import json

from jsonargparse import ArgumentParser

from vmas_lightning.registry import REGISTRIES

HELP = "List the registered plugins of every kind (built-in and entry points)."


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas plugins", description=HELP)
    parser.add_argument("--json", action="store_true", help="Print a JSON object {kind: [names]}.")
    parser.add_argument("--options", action="store_true",
                        help="Also each plugin's options with their types and defaults (JSON: {kind: {name: {option: ...}}}).")
    return parser


def run(cfg) -> int:
    listing = {kind: registry.names() for kind, registry in REGISTRIES.items()}
    if cfg.options:
        listing = {kind: {name: REGISTRIES[kind].options(name) for name in names} for kind, names in listing.items()}
    if cfg.json:
        print(json.dumps(listing, indent=2))
        return 0
    for kind, registry in REGISTRIES.items():
        print(f"{kind:18s} {', '.join(listing[kind]) or '-':40s}  # {registry.description}")
        if cfg.options:
            for name, options in listing[kind].items():
                print(f"  {name}: " + (", ".join(f"{option}: {text}" for option, text in options.items()) or "no options"))
    return 0
