"""End to end on the tiny config and the demo data: fit -> test -> generate, and the ablation configs."""
import json
import math

import numpy as np
import pytest
import soundfile
import yaml

from helpers import ROOT, TINY_CONFIG, fit_tiny
from vmas_lightning.cli.main import main


@pytest.mark.slow
def test_fit_test_generate(demo_data, tmp_path, capsys):
    ckpt = fit_tiny(demo_data, tmp_path / "train")
    events = list((tmp_path / "train").glob("lightning_logs/version_*/events.out.tfevents.*"))
    assert events, "TensorBoard logs"
    # the run's saved config holds every plugin option and, read again, prints itself (issue 15)
    saved = next((tmp_path / "train").glob("lightning_logs/version_*/config.yaml"))
    assert yaml.safe_load(saved.read_text())["model"]["decoder"]["max_positions"] == 2048  # a default never typed
    capsys.readouterr()  # the fit's own output
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(saved), "--print_config"])
    assert capsys.readouterr().out == saved.read_text()

    out = tmp_path / "test"
    code = main(["test", "--config", str(TINY_CONFIG), "--data.root", str(demo_data), "--data.num_workers", "0",
                 "--trainer.default_root_dir", str(tmp_path / "train"), "--model.evaluation.output_dir", str(out),
                 "--ckpt_path", str(ckpt)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("fad", "kl", "mv_align", "recall@1", "recall@10"):
        assert isinstance(metrics[key], float) and math.isfinite(metrics[key]), (key, metrics[key])
    assert metrics["num_clips"] == 4 and metrics["embedder"] == "encodec"
    rows = metrics["reference_rows"]
    assert list(rows) == ["ground_truth", "codec_round_trip", "another_clip", "generated_for_another_video"]
    assert rows["ground_truth"]["onset_f1"] >= 0.9 and rows["another_clip"]["onset_f1"] < 0.6  # own cuts vs another's
    assert rows["ground_truth"]["alignment_z"] > rows["another_clip"]["alignment_z"] + 1  # and against shifted music
    # demo test clips name their video files as sources: MV-Align follows the AV-Align protocol on them
    assert metrics["mv_align_protocol"] == "source_native_rate" and metrics["input_path"] == "shard_frames"
    # the shuffled-video control is the same generated audio, each scored against another clip
    assert rows["generated_for_another_video"]["onsets_per_clip"] == pytest.approx(metrics["onsets_per_clip"])
    assert len(list((out / "audio").glob("*.wav"))) == 4
    assert len((out / "clips.csv").read_text().splitlines()) == 5

    # the same clips through the path users take: the frames of each clip's video file, as `vmas generate` reads it
    files = tmp_path / "test-files"
    assert main(["test", "--config", str(TINY_CONFIG), "--data.root", str(demo_data), "--data.num_workers", "0",
                 "--trainer.default_root_dir", str(tmp_path / "train"), "--model.evaluation.output_dir", str(files),
                 "--data.test_input", "video_file", "--ckpt_path", str(ckpt)]) == 0
    by_file = json.loads((files / "metrics.json").read_text())
    assert by_file["input_path"] == "video_file" and by_file["num_clips"] == 4
    assert by_file["reference_rows"]["ground_truth"] == metrics["reference_rows"]["ground_truth"]  # same music and labels
    assert by_file["ce"] != metrics["ce"]  # other pictures
    capsys.readouterr()
    assert main(["results", str(out), str(files)]) == 0
    assert "| **test-files** (frames from video files) |" in capsys.readouterr().out

    # `vmas predict` with the writer from the README: per-clip seeds give the clips `vmas test` generated
    predicted = tmp_path / "predict"
    assert main(["predict", "--config", str(TINY_CONFIG), "--data.root", str(demo_data), "--data.num_workers", "0",
                 "--trainer.default_root_dir", str(tmp_path / "train"), "--ckpt_path", str(ckpt),
                 "--trainer.callbacks+=vmas_lightning.generation.writer.MusicWriter",
                 "--trainer.callbacks.output_dir", str(predicted)]) == 0
    assert sorted(p.name for p in predicted.iterdir()) == sorted(p.name for p in (out / "audio").iterdir())
    for wav in predicted.iterdir():
        np.testing.assert_array_equal(soundfile.read(wav)[0], soundfile.read(out / "audio" / wav.name)[0])

    video = next((demo_data / "videos" / "test").glob("*.mp4"))
    assert main(["generate", "--ckpt", str(ckpt), "--video", str(video), "--out", str(tmp_path / "gen" / "clip"),
                 "--seed", "0"]) == 0
    assert (tmp_path / "gen" / "clip.wav").exists() and (tmp_path / "gen" / "clip.mp4").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "overlay", ["ablations/ar_baseline.yaml", "ablations/contrastive.yaml", "encoders/clip_tiny.yaml", "encoders/hiera_tiny.yaml"]
)
def test_ablation_configs_train_on_the_demo_data(demo_data, tmp_path, overlay):
    ckpt = fit_tiny(demo_data, tmp_path, "--config", str(ROOT / "configs" / overlay))
    assert ckpt.exists()
