"""benchmarks/robustness.py: held-out demo clips as uploads, through `vmas generate`'s path. Its numbers
are results (benchmarks/RESULTS.md), never asserted; here: that each row measures what it says
(the forms' files are what they claim, the evaluators score the truth ideal and another clip at
chance, the feature cosines have known answers)."""
import importlib.util
import json
import sys

import numpy as np
import pytest

from helpers import ROOT
from vmas_lightning.video_io import probe, read_video


def load_robustness():
    spec = importlib.util.spec_from_file_location("robustness", ROOT / "benchmarks" / "robustness.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["robustness"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_style_cosines_have_known_answers():
    cosines = load_robustness().style_cosines
    features = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    values = cosines(features, ["a", "a", "b", "b"])
    assert values["within_style_raw"] == pytest.approx(1.0) and values["between_styles_raw"] == pytest.approx(0.0)
    collapsed = cosines(np.array([[1.0, 0.001], [1.0, 0.0], [1.0, -0.001], [1.0, 0.002]]), ["a", "a", "b", "b"])
    assert collapsed["between_styles_raw"] > 0.999  # what a collapsed encoder shows


@pytest.mark.parametrize("key, fps, size, codec", [
    ("h264_crf28", 30.0, (256, 256), "h264"), ("hevc", 24.0, (128, 128), "hevc"),
    ("vp9_pillarbox", 30.0, (640, 360), "vp9"), ("h264_letterbox", 30.0, (360, 640), "h264"),
    ("h264_ntsc_darker", 30000 / 1001, (256, 256), "h264"),
])
def test_each_form_writes_the_file_it_names(tmp_path, key, fps, size, codec):
    import av

    robustness = load_robustness()
    form = robustness.FORMS[key][1]
    frames = form.frames(seed=4, index=0, duration_s=2.0)
    path = form.write(tmp_path / "clip", frames, np.zeros(64000, np.float32), 32000)
    info = probe(path)
    assert (info.width, info.height) == size and info.fps == pytest.approx(fps, rel=1e-3)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == codec
    model_frames = read_video(path, fps=9.6, size=64).frames
    assert model_frames.shape == (int(len(frames) / fps * 9.6 + 1e-6), 64, 64, 3)  # the file's own duration
    if key in ("vp9_pillarbox", "h264_letterbox"):  # the bars are outside the model's center crop
        assert model_frames[:, :, :2].mean() > 5 and model_frames[:, :2].mean() > 5


@pytest.mark.slow
def test_the_benchmark_scores_the_truth_ideal_and_runs_every_row_it_is_asked(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    report = load_robustness().main(["--num-clips", "4", "--forms", "shard,h264_crf28"])
    assert json.loads(capsys.readouterr().out) == report  # nothing but the JSON on stdout
    assert list(report["rows"]) == ["shard", "h264_crf28"] and report["num_clips"] == 4
    truth = report["truth"]
    assert truth["style_accuracy"] == 1.0 and truth["onset_f1"] == 1.0 and truth["onset_f1_other_clip"] < 0.6
    for row in report["rows"].values():
        assert 0 <= row["onset_f1"] <= 1 and row["true_onsets_per_clip"] == truth["true_onsets_per_clip"]
        assert row["passes"] in (True, False) and -1 <= row["feature_change_cosine"] <= 1
    assert report["rows"]["shard"]["feature_change_cosine"] == pytest.approx(1.0)
    assert -1 <= report["features"]["between_styles_raw"] < report["features"]["within_style_raw"] <= 1


def test_change_cosine_sees_the_changes_not_the_style():
    cosine = load_robustness().change_cosine
    steps = np.zeros((6, 3))
    steps[3:, 0] = 1.0  # a cut at step 3
    style = np.array([0.0, 5.0, 5.0])
    assert cosine(steps + style, steps) == pytest.approx(1.0)  # another constant offset: the same changes
    late = np.roll(steps, 1, axis=0)
    late[0] = 0.0  # the cut a step later
    assert cosine(late, steps) < 0.7


def test_reports_of_split_rows_join_into_one_with_every_row_checked_against_the_shard_row(capsys):
    robustness = load_robustness()
    row = dict(style_accuracy=1.0, onset_f1=0.6, onsets_per_clip=9.0, true_onsets_per_clip=8.0, onset_f1_other_clip=0.1)
    common = {"ckpt": "m.ckpt", "seed": 4, "num_clips": 36, "truth": {}, "seconds": 10.0}
    first = {**common, "rows": {"hevc": {**row, "style_accuracy": 0.94}}}
    features = {**common, "rows": {"hevc": {"feature_change_cosine": 0.9}, "shard": {"feature_change_cosine": 1.0}}}
    second = {**common, "rows": {"shard": row, "h264_crf28": {**row, "onsets_per_clip": 11.0}}, "features": {"x": 1}}
    merged = robustness.finish(robustness.merge_reports([first, second, features]), False)
    assert list(merged["rows"]) == ["shard", "h264_crf28", "hevc"] and merged["seconds"] == 30.0 and merged["features"]
    assert merged["rows"]["hevc"]["feature_change_cosine"] == 0.9 and merged["rows"]["hevc"]["style_accuracy"] == 0.94
    # onsets +37.5%: out; style 0.06 below the shard row: out
    assert [v["passes"] for v in merged["rows"].values()] == [True, False, False] and merged["all_pass"] is False
    with pytest.raises(SystemExit):
        robustness.merge_reports([first, {**second, "seed": 5}])
