"""Reading `vmas fit` config files outside LightningCLI (profile, beats, prepare, demo data, generation's
beat settings, the benchmarks): `load_config` parses a stack of them with the parser LightningCLI
builds from the same dataclasses (`config.ModelConfig`, `config.DataConfig`), so every command reads
them alike; one-line errors for an unreadable file, a wrong section or an unknown key."""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import yaml
from jsonargparse import ActionConfigFile, ArgumentError, ArgumentParser

from vmas_lightning.config import DataConfig, ModelConfig
from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.sequence import SequenceConfig


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


@dataclass
class RunConfig:
    """A stack of `vmas fit` config files as the config parser reads them (`load_config`).

    Args:
        model: the `model:` section, typed (plugin specs expanded to every option).
        data: the `data:` section, typed (its `sequence` and `codec` linked from `model`).
        trainer: the `trainer:` section as plain values (Lightning's `Trainer` arguments, checked
            against them when read with ``trainer=True``).
        seed_everything: the run's seed setting.
        text: the whole parsed config as YAML, as `--print_config` writes it (a canonical form:
            equal configs give equal text).
    """

    model: ModelConfig
    data: DataConfig
    trainer: dict[str, Any]
    seed_everything: Union[bool, int]
    text: str


def link_model_to_data(parser: ArgumentParser) -> None:
    """`model.sequence` is the one clip geometry and `model.codec` the one codec: `data` receives both."""
    for spec in fields(SequenceConfig):
        parser.link_arguments(f"model.sequence.{spec.name}", f"data.sequence.{spec.name}")
    parser.link_arguments("model.codec", "data.codec")  # the data module checks the shards' codec against it


def config_parser(trainer: bool = True) -> ArgumentParser:
    """The parser of `vmas fit`'s config files without LightningCLI: `model` and `data` from the same
    dataclasses that `VMASModule` and `VMASDataModule` are built from, linked as `VMASCLI` links them.
    ``trainer=True`` types the `trainer:` section by Lightning's `Trainer` (imports Lightning); False
    takes it as a plain mapping, unchecked (for inference, which imports no training code and reads
    no trainer setting)."""
    parser = ArgumentParser(prog="vmas", exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--seed_everything", type=Union[bool, int], default=True)
    parser.add_argument("--ckpt_path", type=Optional[str], default=None)
    if trainer:
        from lightning.pytorch import Trainer

        parser.add_class_arguments(Trainer, "trainer", instantiate=False, fail_untyped=False)
    else:
        parser.add_argument("--trainer", type=dict, default={})
    parser.add_class_arguments(ModelConfig, "model")
    parser.add_class_arguments(DataConfig, "data")
    link_model_to_data(parser)
    return parser


def add_config_argument(parser: ArgumentParser, used: str, default: Optional[str] = None, flag: str = "--config",
                        required: bool = False) -> None:
    """`flag PATH`, repeatable: a stack of `vmas fit` config files read by `load_config` (`used`: what of
    them the command uses); `stacked_paths` gives the paths, or `[default]` when none was given."""
    parser.add_argument(flag, action="append", default=None, required=required,
                        help=f"A vmas fit config file: {used}. Repeat it to stack configs, later ones over earlier ones, "
                             f"as vmas fit --config stacks them" + (f" (default: {default})." if default else "."))


def stacked_paths(given: Optional[Sequence[str]], default: Optional[str] = None) -> list[str]:
    """The paths of an `add_config_argument` flag: those given, else `[default]` (else none)."""
    return list(given) if given else ([default] if default else [])


Layer = Union[str, Path, Mapping[str, Any]]  # a config file, or a config's contents (an overlay made in code)


def config_name(layers: Layer | Sequence[Layer]) -> str:
    """How errors and reports name one config file or a stack of them (an overlay made in code: its YAML)."""
    layers = [layers] if isinstance(layers, (str, Path, Mapping)) else layers
    return " + ".join(str(layer) if isinstance(layer, (str, Path)) else _flow_yaml(layer) for layer in layers)


def _flow_yaml(layer: Mapping[str, Any]) -> str:
    plain = json.loads(json.dumps(layer))  # tuples as lists, as a YAML file holds them
    return yaml.safe_dump(plain, default_flow_style=True, width=10**6).strip()


def load_config(layers: Layer | Sequence[Layer], overrides: Sequence[str] = (), trainer: bool = True,
                name: Optional[str] = None) -> RunConfig:
    """Config files stacked in order, with command-line `overrides` (`["--model.loss.alpha", "0"]`) on
    top, read as `vmas fit --config A --config B ...` reads them (`config_parser`): mappings merge key
    by key, a plugin spec, a list or a value replaces. A layer may also be a mapping (an overlay that
    code makes, such as an ablation row). One-line errors: an unreadable file names it
    (`InputFileError`), a wrong key or value names the stack, or `name` (`VMASError`)."""
    layers = [layers] if isinstance(layers, (str, Path, Mapping)) else list(layers)
    arguments = []
    for layer in layers:
        if isinstance(layer, Mapping):
            arguments += ["--config", _flow_yaml(layer)]
        else:
            read_config(layer)  # an unreadable or non-mapping file: one line naming it
            arguments += ["--config", str(layer)]
    parser = config_parser(trainer)
    try:
        namespace = parser.parse_args(arguments + list(overrides))
        built = parser.instantiate_classes(namespace)
    except (ArgumentError, VMASError) as err:
        raise VMASError(f"{name or config_name(layers)}: {' '.join(str(err).split())}") from None
    # the trainer's settings as written (class_path/init_args), not the objects instantiation made of them
    trainer_section = namespace.trainer.as_dict() if hasattr(namespace.trainer, "as_dict") else dict(namespace.trainer)
    return RunConfig(model=built.model, data=built.data, trainer=trainer_section,
                     seed_everything=built.seed_everything, text=parser.dump(namespace, skip_link_targets=False))


def check_known(kind: type, values: Mapping[str, Any] | None, where: str) -> None:
    """One-line `VMASError` when `values` is not a mapping or has a key that is not a field of the
    dataclass `kind` (None: no values)."""
    known = sorted(f.name for f in fields(kind))
    if values is None:
        return
    if not isinstance(values, Mapping):
        raise VMASError(f"{where} must be a mapping of {', '.join(known)}, got {type(values).__name__} {values!r}")
    unknown = sorted(set(values) - set(known), key=str)
    if unknown:
        raise VMASError(f"{where} has no key {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
