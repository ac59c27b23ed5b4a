"""The `vmas` command: help, plugins, and one-line errors for wrong configs and missing inputs."""
import json
import subprocess
import sys
from pathlib import Path


from conftest import ROOT, TINY_CONFIG, one_line_error
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
    assert main(["fit", "--config", TINY, "--model.no_such_key", "1"]) == 2
    assert "no_such_key" in one_line_error(capsys)


def test_unknown_plugin_in_config_is_one_line(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    code = main(["fit", "--config", TINY, "--data.root", str(data), "--model.encoder", '{"name": "resnet"}'])
    assert code == 2
    err = one_line_error(capsys)
    assert "unknown video_encoder 'resnet'" in err and "efficient_hiera" in err


def test_missing_data_folder_is_one_line(capsys, tmp_path):
    missing = tmp_path / "nowhere"
    assert main(["fit", "--config", TINY, "--data.root", str(missing), "--trainer.max_steps", "1"]) == 2
    assert str(missing) in one_line_error(capsys)


def test_paper_config_without_weights_names_what_to_download(capsys, tmp_path):
    code = main(["fit", "--config", str(ROOT / "configs" / "vmas.yaml"), "--data.root", str(tmp_path)])
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
    assert "model.codec {'name': 'encodec', 'seed': 0, 'size': 'tiny'} in the shards" in one_line_error(capsys)


def test_trainer_gradient_clip_val_is_rejected_not_ignored(capsys, tmp_path, demo_data):
    """Clipping is `model.optim.grad_clip`; the Trainer's own setting was silently overridden."""
    code = main(["fit", "--config", TINY, "--data.root", str(demo_data), "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.max_steps", "1", "--trainer.gradient_clip_val", "0.5"])
    assert code == 2
    err = one_line_error(capsys)
    assert "trainer.gradient_clip_val 0.5 is not used" in err and "model.optim.grad_clip" in err
