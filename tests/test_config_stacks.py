"""One parser for every command: `config_file.load_config` (profile, profile --memory, beats, prepare,
demo-data, demo-assets, generate's and serve's --beats-config, the benchmarks) reads a stack of
config files exactly as the LightningCLI parser of `vmas fit`, `validate`, `test` and `predict` does,
and every command that takes configs takes a stack."""
import importlib
import json

import numpy as np
import pytest
import yaml

from helpers import DEMO_CKPT, ROOT, TINY_CONFIG, one_line_error
from media import cut_frames
from vmas_lightning.cli.lightning import VMASCLI
from vmas_lightning.cli.main import PROJECT_COMMANDS, main
from vmas_lightning.cli.profile import profile
from vmas_lightning.config_file import load_config
from vmas_lightning.video_io import write_video
from vmas_lightning.errors import VMASError

STACKS = [
    ("configs/tiny.yaml",),
    ("configs/demo.yaml",),
    ("configs/vmas.yaml",),
    ("configs/tiny.yaml", "configs/encoders/hiera_tiny.yaml"),  # the encoder spec replaced whole (was: merged key by key)
    ("configs/tiny.yaml", "configs/encoders/clip_tiny.yaml"),
    ("configs/tiny.yaml", "configs/ablations/ar_baseline.yaml"),
    ("configs/demo.yaml", "configs/ablations/contrastive.yaml"),
    ("configs/demo.yaml", "configs/demo_text.yaml"),  # the committed demo model: text control on the video model
    ("configs/vmas.yaml", "configs/encoders/hiera.yaml"),
    ("configs/vmas.yaml", "configs/cluster/fsdp.yaml"),
    ("configs/vmas.yaml", "configs/text/t5.yaml"),
]
# The overlay of the command tests: one setting each command reads, none at its default.
OVERLAY = {"trainer": {"precision": "bf16-mixed"}, "model": {"sequence": {"frame_size": 128}},
           "data": {"batch_size": 3, "beats": {"peak_window": 7}}}
# Each project command that reads configs: its flag and the other arguments its parser requires.
CONFIG_FLAGS = {"profile": ("--config", []), "beats": ("--config", ["--video", "v.mp4"]), "prepare": ("--config", ["--input", "x", "--out", "y"]),
                "demo-data": ("--config", ["--out", "y"]), "demo-assets": ("--config", []),
                "generate": ("--beats-config", ["--ckpt", "m.ckpt"]), "serve": ("--beats-config", ["--ckpt", "m.ckpt"])}


class ParseOnly(VMASCLI):
    """`vmas fit`'s parser and nothing more: the config it reads, no network built."""

    def instantiate_classes(self) -> None:
        """Build nothing: the parsed `self.config` is all this test compares."""


def fit_parse(paths, tmp_path) -> dict:
    cli = ParseOnly([arg for p in paths for arg in ("--config", p)], run=False)
    return yaml.safe_load(cli.parser.dump(cli.config, skip_link_targets=False))


@pytest.mark.parametrize("stack", STACKS, ids=lambda stack: "+".join(p.split("/")[-1] for p in stack))
def test_load_config_reads_a_stack_as_vmas_fit_does(stack, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # configs/demo.yaml names the demo codec relative to the checkout
    paths = [str(ROOT / p) for p in stack]
    run = load_config(paths)
    assert yaml.safe_load(run.text) == fit_parse(paths, tmp_path)  # every section, every setting
    assert run.data.sequence == run.model.sequence and run.data.codec == run.model.codec  # linked as vmas fit links them


def test_profile_of_a_stack_measures_the_network_vmas_fit_builds(tmp_path):
    paths = [str(TINY_CONFIG), str(ROOT / "configs/encoders/hiera_tiny.yaml")]
    cli = VMASCLI([arg for p in paths for arg in ("--config", p)] + ["--trainer.logger", "false",
                  "--trainer.default_root_dir", str(tmp_path)], run=False)
    report = profile(load_config(paths).model)
    assert cli.model.model.encoder.__class__.__name__.lower().startswith("hiera")
    assert report["encoder"]["params"] == sum(p.numel() for p in cli.model.model.encoder.parameters())
    assert report["decoder"]["params"] == sum(p.numel() for p in cli.model.model.decoder.parameters())


@pytest.mark.parametrize("command", sorted(CONFIG_FLAGS))
def test_every_command_that_reads_configs_takes_a_stack(command):
    flag, required = CONFIG_FLAGS[command]
    assert command in PROJECT_COMMANDS
    parsed = importlib.import_module(PROJECT_COMMANDS[command]).build_parser().parse_args([flag, "a.yaml", flag, "b.yaml", *required])
    assert getattr(parsed, flag.lstrip("-").replace("-", "_")) == ["a.yaml", "b.yaml"]


@pytest.fixture
def overlay(tmp_path):
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(OVERLAY))
    return str(path)


def test_commands_honour_the_stack(overlay, tmp_path, capsys):
    """Each command uses the overlay's setting that concerns it (what `load_config` of the stack gives)."""
    stack = ["--config", str(TINY_CONFIG), "--config", overlay]
    # profile --memory: the trainer's precision and the data's batch size
    assert main(["profile", "--memory", "--json", *stack]) == 0
    setup = json.loads(capsys.readouterr().out)["setup"]
    assert (setup["precision"], setup["batch_size"]) == ("bf16-mixed", 3)
    # profile: the sequence's frame size reaches the encoder
    assert main(["profile", "--json", *stack]) == 0
    assert json.loads(capsys.readouterr().out)["encoder"]["input_shape"][-1] == 128
    # demo-data: the shards record the stacked geometry and beat settings
    assert main(["demo-data", *stack, "--out", str(tmp_path / "data"), "--num-train", "1", "--num-val", "1",
                 "--num-test", "1"]) == 0
    capsys.readouterr()
    annotation = json.loads((tmp_path / "data" / "train" / "annotation.json").read_text())
    assert annotation["model.sequence.frame_size"] == 128 and annotation["data.beats.peak_window"] == 7
    # beats: the stacked beat settings
    video = write_video(tmp_path / "cuts.mp4", cut_frames([1.0, 2.0], 3.0, 15.0), 15.0)
    assert main(["beats", "--video", str(video), "--json", *stack]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["peak_window"] == 7


def test_generation_reads_its_beat_settings_from_a_stack(overlay):
    from vmas_lightning.generation.pipeline import Generation, GenerationOptions

    generation = Generation(GenerationOptions(ckpt=str(DEMO_CKPT), beats_config=[str(TINY_CONFIG), overlay]))
    assert generation.beats.peak_window == 7
    assert Generation(GenerationOptions(ckpt=str(DEMO_CKPT))).beats.peak_window == 25  # the default without one


def test_a_wrong_key_anywhere_in_a_stack_is_one_line_naming_it(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  loss:\n    alfa: 0.5\n")
    with pytest.raises(VMASError, match=r"tiny.yaml \+ .*bad.yaml: .*alfa"):
        load_config([TINY_CONFIG, bad])
    assert main(["profile", "--config", str(TINY_CONFIG), "--config", str(bad)]) == 2
    assert "alfa" in one_line_error(capsys)
    assert main(["profile", "--config", str(tmp_path / "missing.yaml")]) != 0
    assert "missing.yaml" in one_line_error(capsys)


def test_the_modules_take_their_sections_by_keyword_and_refuse_unknown_ones():
    from vmas_lightning.data.datamodule import VMASDataModule
    from vmas_lightning.lit_module import VMASModule

    with pytest.raises(VMASError, match="model has no key 'encodr'"):
        VMASModule(encodr="clip")
    with pytest.raises(VMASError, match="data.root is not set"):
        VMASDataModule(batch_size=2)
    with pytest.raises(VMASError, match="data.test_input must be one of"):
        VMASDataModule(root="x", test_input="frames")


def test_an_overlay_made_in_code_stacks_like_a_file(tmp_path):
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(OVERLAY))
    assert load_config([TINY_CONFIG, OVERLAY]).text == load_config([TINY_CONFIG, path]).text
    assert np.isclose(load_config([TINY_CONFIG, {"model": {"loss": {"alpha": 0.25}}}]).model.loss.alpha, 0.25)
