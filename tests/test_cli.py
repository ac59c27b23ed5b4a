"""The `vmas` command: help, plugins, and one-line errors for wrong configs and missing inputs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import ROOT, TINY_CONFIG, one_line_error
from vmas_lightning.cli.main import main

TINY = str(TINY_CONFIG)


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("fit", "validate", "test", "predict", "demo-data", "plugins", "prepare", "generate", "profile", "beats"):
        assert f"  {command} " in out


def test_console_script_help_and_plugins():
    vmas = Path(sys.executable).parent / "vmas"
    help_out = subprocess.run([vmas, "--help"], capture_output=True, text=True, check=True).stdout
    assert "demo-data" in help_out and "fit" in help_out
    listing = json.loads(subprocess.run([vmas, "plugins", "--json"], capture_output=True, text=True, check=True).stdout)
    assert {"clip", "hiera", "efficient_hiera"} <= set(listing["video_encoder"])


def test_unknown_command(capsys):
    assert main(["train"]) == 2
    assert "unknown command 'train'" in one_line_error(capsys)


def test_wrong_config_key_is_one_line(capsys, tmp_path):
    assert main(["fit", "--config", TINY, "--trainer.default_root_dir", str(tmp_path), "--model.no_such_key", "1"]) == 2
    assert "no_such_key" in one_line_error(capsys)


def test_wrong_frame_sampling_is_one_line(capsys, tmp_path):
    assert main(["fit", "--config", TINY, "--trainer.default_root_dir", str(tmp_path), "--model.sequence.frame_sampling", "blend"]) == 2
    err = one_line_error(capsys)
    assert "frame_sampling" in err and "average" in err


def test_unknown_plugin_in_config_is_one_line(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    code = main(["fit", "--config", TINY, "--data.root", str(data), "--trainer.default_root_dir", str(tmp_path),
                 "--model.encoder", '{"name": "resnet"}'])
    assert code == 2
    err = one_line_error(capsys)
    assert "unknown video_encoder 'resnet'" in err and "efficient_hiera" in err


def test_missing_data_folder_is_one_line(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    assert main(["fit", "--config", TINY, "--data.root", str(missing), "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.max_steps", "1"]) == 2
    assert str(missing) in one_line_error(capsys)


def test_paper_config_without_weights_names_what_to_download(capsys, tmp_path):
    code = main(["fit", "--config", str(ROOT / "configs" / "vmas.yaml"), "--data.root", str(tmp_path),
                 "--trainer.default_root_dir", str(tmp_path)])
    assert code == 2
    err = one_line_error(capsys)
    assert "missing pretrained weights" in err


def test_fit_without_config_and_evaluation_without_checkpoint_stop_before_building(capsys, tmp_path):
    """`vmas fit` without --config built the 1.9 B-parameter model with random weights (8.6 GB) before
    failing on the data; `vmas test` without --ckpt_path scored an untrained model next to the paper."""
    assert main(["fit", "--data.root", str(tmp_path)]) == 2
    assert "vmas fit needs --config (configs/tiny.yaml" in one_line_error(capsys)
    for command in ("validate", "test", "predict"):
        assert main([command, "--config", TINY, "--data.root", str(tmp_path)]) == 2
        assert f"vmas {command} needs --ckpt_path CKPT" in one_line_error(capsys)


def test_fit_refuses_data_made_with_other_beat_settings(capsys, tmp_path, demo_data):
    """`data.beats.peak_window` acts when the shards are made: fit with another value stops, naming both."""
    code = main(["fit", "--config", TINY, "--data.root", str(demo_data), "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.max_steps", "1", "--data.beats.peak_window", "31"])
    assert code == 2
    err = one_line_error(capsys)
    assert f"{demo_data}/train: made with other settings than the config's (data.beats.peak_window 25 in the shards, " \
           "31 in the config)" in err
    # the codec is linked from model.codec: another codec's tokens are refused too
    assert main(["fit", "--config", TINY, "--data.root", str(demo_data), "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.max_steps", "1", "--model.codec.seed", "1"]) == 2
    assert "(model.codec.seed 0 in the shards, 1 in the config)" in one_line_error(capsys)


def test_trainer_gradient_clip_val_is_rejected_not_ignored(capsys, tmp_path, demo_data):
    """Clipping is `model.optim.grad_clip`; the Trainer's own setting was silently overridden."""
    code = main(["fit", "--config", TINY, "--data.root", str(demo_data), "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.max_steps", "1", "--trainer.gradient_clip_val", "0.5"])
    assert code == 2
    err = one_line_error(capsys)
    assert "trainer.gradient_clip_val 0.5 is not used" in err and "model.optim.grad_clip" in err


def print_config(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as done:
        main(["fit", *argv, "--print_config"])
    assert done.value.code == 0
    return capsys.readouterr().out


def test_print_config_shows_every_plugin_option_and_parses_back(capsys, tmp_path):
    """Issue 15: the saved config lost the options the user did not type (the decoder's dropout,
    max_positions); now every plugin's every option is printed with its default, and the printed
    config, read again, prints the same text."""
    printed = print_config(capsys, "--config", str(ROOT / "configs" / "demo.yaml"))
    config = yaml.safe_load(printed)
    decoder = config["model"]["decoder"]
    assert decoder["dropout"] == 0.1 and decoder["max_positions"] == 2048 and decoder["config"] is None
    assert decoder["num_layers"] == 4 and decoder["aligned_interpolation"] == "linear"  # the config's own values
    assert config["model"]["encoder"]["q_strides"] == [[1, 4, 4], [1, 2, 2], [1, 2, 2]]
    assert config["model"]["encoder"]["mask_units"] is None and config["model"]["codec"]["griffin_lim_iters"] == 32
    assert config["data"]["beats"]["optical_flow"]["winsize"] == 15
    assert config["model"]["evaluation"]["classifier"] == {"name": "demo_style",
                                                           "pretrained": "checkpoints/demo/style_net.pt"}
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed)
    assert print_config(capsys, "--config", str(saved)) == printed
    # one option on the command line: merged into the expanded spec
    changed = yaml.safe_load(print_config(capsys, "--config", str(saved), "--model.decoder.dropout", "0.3"))
    assert changed["model"]["decoder"] == {**decoder, "dropout": 0.3}


@pytest.mark.parametrize("spec, problem", [
    ('{"name": "efficient_hiera", "sise": "tiny"}', "video_encoder 'efficient_hiera' has no option 'sise'; accepted: "
                                                   "size, pretrained, freeze, q_strides, mask_units"),
    ('{"name": "efficient_hiera", "num_frames": 16}', "video_encoder 'efficient_hiera': num_frames is derived from the "
                                                     "other settings"),
    ('{"name": "efficient_hiera", "freeze": "sometimes"}', "video_encoder 'efficient_hiera': Parser key \"freeze\""),
])
def test_a_wrong_plugin_option_stops_in_one_line(capsys, tmp_path, spec, problem):
    code = main(["fit", "--config", TINY, "--data.root", str(tmp_path), "--trainer.default_root_dir", str(tmp_path),
                 "--model.encoder", spec])
    assert code == 2
    assert problem in one_line_error(capsys)


def test_a_misspelt_option_on_the_command_line_stops_fit_in_one_line(capsys, tmp_path):
    """`--model.X.option value` is merged into the spec; the misspelt option stops `vmas fit`, also for
    the evaluation plugins that only `vmas test` builds."""
    for flag, problem in (("--model.decoder.dropuot", "music_decoder 'musicgen' has no option 'dropuot'"),
                          ("--model.evaluation.classifier.sead", "audio_classifier 'ast' has no option 'sead'")):
        assert main(["fit", "--config", TINY, "--data.root", str(tmp_path), "--trainer.default_root_dir", str(tmp_path),
                     flag, "0"]) == 2
        assert problem in one_line_error(capsys)


def test_plugins_options_list_each_option_with_type_and_default(capsys):
    assert main(["plugins", "--options", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    hiera = listing["video_encoder"]["efficient_hiera"]
    assert hiera["size"] == "str = 'base'" and "num_frames" not in hiera  # derived: not an option
    assert listing["audio_embedder"]["demo_style"] == {"pretrained": "str, required"}
    assert listing["source_separator"]["none"] == {}
