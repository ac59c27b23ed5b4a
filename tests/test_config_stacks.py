"""Stacked configs read the same way by every command: `read_configs` (profile, profile-memory, beats,
prepare, the ablation harness) against the LightningCLI parser of `vmas fit`."""
import pytest

from helpers import ROOT
from vmas_lightning.cli.lightning import VMASCLI
from vmas_lightning.cli.profile import profile
from vmas_lightning.config_file import read_configs

STACKS = [
    ("configs/tiny.yaml", "configs/encoders/hiera_tiny.yaml"),  # the encoder spec replaced whole (was: merged key by key)
    ("configs/tiny.yaml", "configs/encoders/clip_tiny.yaml"),
    ("configs/tiny.yaml", "configs/ablations/ar_baseline.yaml"),
    ("configs/demo.yaml", "configs/ablations/contrastive.yaml"),
]


def leaves(tree, path=()):
    """(path, value) of every value that is not a mapping (lists are values)."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from leaves(value, (*path, key))
    else:
        yield path, tree


def parsed(namespace, path):
    for key in path:
        namespace = namespace[key] if isinstance(namespace, dict) else getattr(namespace, key)
    return namespace.as_dict() if hasattr(namespace, "as_dict") else namespace


def plain(value):
    return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def same(parsed_value, read_value) -> bool:
    """Equal, where the parser writes a plugin spec given by name as its full spec."""
    if isinstance(read_value, str) and isinstance(parsed_value, dict) and "name" in parsed_value:
        return parsed_value["name"] == read_value
    return plain(parsed_value) == plain(read_value)


@pytest.mark.parametrize("stack", STACKS, ids=lambda stack: "+".join(p.split("/")[-1] for p in stack))
def test_read_configs_gives_what_the_parser_of_vmas_fit_gives(stack, tmp_path):
    paths = [str(ROOT / p) for p in stack]
    cli = VMASCLI([arg for p in paths for arg in ("--config", p)] + ["--trainer.logger", "false",
                  "--trainer.default_root_dir", str(tmp_path)], run=False)
    stacked = read_configs(paths)
    for section in ("model", "data"):
        for path, value in leaves(stacked.get(section, {}), (section,)):
            assert same(parsed(cli.config, path), value), ".".join(path)
    # and every plugin spec holds nothing but the last file's options and the plugin's defaults
    encoder = cli.config.model.encoder
    assert {k: v for k, v in stacked["model"]["encoder"].items()} == {k: encoder[k] for k in stacked["model"]["encoder"]}
    # `vmas profile` on the stack measures the network `vmas fit` builds
    report = profile(stacked["model"])
    assert report["encoder"]["params"] == sum(p.numel() for p in cli.model.model.encoder.parameters())
    assert report["decoder"]["params"] == sum(p.numel() for p in cli.model.model.decoder.parameters())
