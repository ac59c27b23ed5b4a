"""Demo data: deterministic, cuts on musical onsets, style decides the music, stored as shards."""
import json

import numpy as np
import pytest
from litdata import StreamingDataset

from helpers import TINY_CONFIG, one_line_error
from vmas_lightning.beats import BeatConfig, overlap
from vmas_lightning.data.demo import STYLES, synthesize_clip
from vmas_lightning.data.shards import ShardConfig, decode_sample
from vmas_lightning.video_io import read_audio, read_video


def test_same_seed_same_clip_other_seed_other_clip():
    config = ShardConfig.from_configs(TINY_CONFIG)
    a, b, c = (synthesize_clip(seed, "train", 3, config.sequence) for seed in (0, 0, 1))
    np.testing.assert_array_equal(a["frames"], b["frames"])
    np.testing.assert_array_equal(a["audio"], b["audio"])
    assert not np.array_equal(a["audio"], c["audio"])


def test_averaged_frames_blend_the_shots_by_their_time_on_screen():
    """`frame_sampling: average` renders frame i as the average over [(i - 1/2) / fps, (i + 1/2) / fps):
    the frame around a cut is the two shots mixed by the fraction of that interval after the cut
    (read on the frame's mean level); every other frame, and
    the music, are the point-sampled clip's."""
    from dataclasses import replace

    seq = replace(ShardConfig.from_configs(TINY_CONFIG).sequence, frame_size=32)
    point = synthesize_clip(0, "train", 5, seq)
    averaged = synthesize_clip(0, "train", 5, replace(seq, frame_sampling="average"))
    np.testing.assert_array_equal(point["audio"], averaged["audio"])
    events = np.array(point["meta"]["events_s"])
    around = np.floor(events * seq.fps + 0.5).astype(int)  # the frame whose interval holds each cut
    around = around[around < seq.num_frames]
    others = np.setdiff1d(np.arange(seq.num_frames), around)
    assert around.size >= 3
    np.testing.assert_array_equal(point["frames"][others], averaged["frames"][others])
    level = lambda frames, i: frames[i].mean()  # noqa: E731  (the shape drifts a fifth of a pixel per frame)
    for event, i in zip(events, around):
        after = (i + 0.5) - event * seq.fps
        expected = after * level(point["frames"], i + 1) + (1 - after) * level(point["frames"], i - 1)
        assert level(averaged["frames"], i) == pytest.approx(expected, abs=1.0)


def test_visual_cuts_land_on_musical_onsets(demo_data):
    dataset = StreamingDataset(str(demo_data / "train"))
    num_events = num_overlaps = 0
    for i in range(len(dataset)):
        clip = decode_sample(dataset[i])
        events = np.array(clip["meta"]["events_s"])
        music = np.flatnonzero(clip["music_beats"])
        # every note the synthesiser placed is detected as a music beat within 1.5 token steps
        # (30 ms): the note starts anywhere inside a step, the detector reports its frame
        assert all(np.min(np.abs(music / 50 - t)) <= 1.5 / 50 for t in events)
        overlaps = overlap(clip["music_beats"], clip["video_beats"], BeatConfig().match_window)  # as the loader does
        assert np.isin(np.flatnonzero(overlaps), music).all()
        num_events, num_overlaps = num_events + len(events), num_overlaps + overlaps.sum()
    # most cuts are found as video beats next to their note (a few drown in the drift's own flow)
    assert num_overlaps >= 0.75 * num_events


def test_style_decides_tempo_and_palette(demo_data):
    dataset = StreamingDataset(str(demo_data / "train"))
    for i in range(len(dataset)):
        clip = decode_sample(dataset[i])
        style = next(s for s in STYLES if s.name == clip["meta"]["style"])
        assert clip["meta"]["tempo_bpm"] == style.tempo_bpm
        gaps = np.diff(clip["meta"]["events_s"])
        period = 60.0 / style.tempo_bpm
        np.testing.assert_allclose(gaps / period, np.round(gaps / period), atol=1e-3)  # on the beat grid
        background = np.median(clip["frames"][0].reshape(-1, 3).astype(float), axis=0)
        nearest = min(STYLES, key=lambda s: np.linalg.norm(background - np.array(s.palette[0])))
        assert nearest is style  # the picture tells the style


def test_every_test_clip_is_also_a_video_file_named_as_its_source(demo_data):
    """The file is the same clip filmed as an upload (25 fps, 96x96 here): its source names it relative
    to the dataset folder, its music is the clip's, and read at the model's rate and size it shows the
    clip's cuts where the shard's frames show them (or a frame later: the source's own frame times)."""
    from vmas_lightning.data.datamodule import resolve_source

    dataset = StreamingDataset(str(demo_data / "test"))
    assert sorted(p.name for p in (demo_data / "videos" / "test").iterdir()) == [f"demo-test-{i:04d}.mp4" for i in range(len(dataset))]
    for index in range(len(dataset)):
        clip = decode_sample(dataset[index])
        assert clip["source"] == f"videos/test/{clip['id']}.mp4"
        video = resolve_source(str(demo_data), clip["source"])
        native = read_video(video)
        assert native.frames.shape == (250, 96, 96, 3) and abs(native.fps - 25.0) < 1e-3
        def envelope(wav):  # RMS per 20-ms step
            return np.sqrt(np.mean(wav[: len(wav) // 640 * 640].reshape(-1, 640) ** 2, axis=1))
        heard, true = envelope(read_audio(video, 32000)[:320000]), envelope(clip["audio"])
        assert np.corrcoef(heard[: len(true)], true[: len(heard)])[0, 1] > 0.95  # AAC of the same music
        frames = read_video(video, fps=9.6, size=64).frames
        assert frames.shape == clip["frames"].shape == (96, 64, 64, 3)
        # a cut is a jump of the background shade: the first slot after each cut, in both
        def cut_slots(images):
            shade = images[:, -4:, :4].reshape(len(images), -1).mean(axis=1)  # a corner the shapes never reach
            return np.flatnonzero(np.abs(np.diff(shade)) > 8) + 1
        shard_cuts, file_cuts = cut_slots(clip["frames"]), cut_slots(frames)
        assert len(shard_cuts) == len(file_cuts) >= 1
        assert np.all((file_cuts - shard_cuts >= 0) & (file_cuts - shard_cuts <= 1))
    assert resolve_source(str(demo_data), "synthetic") is None
    assert resolve_source(str(demo_data), str(video)) == video  # absolute paths as `vmas prepare` stores them


def test_cli_writes_the_splits_and_reports_bad_config_in_one_line(tmp_path, capsys):
    from vmas_lightning.cli.main import main

    out = tmp_path / "data"
    args = ["demo-data", "--config", str(TINY_CONFIG), "--out", str(out), "--num-train", "2", "--num-val", "1", "--num-test", "1"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["clips"] == {"train": 2, "val": 1, "test": 1}
    ids = [decode_sample(s, load_audio=False, load_frames=False)["id"] for s in StreamingDataset(str(out / "train"))]
    assert ids == ["demo-train-0000", "demo-train-0001"]
    assert main([*args[:-6], "--num-train", "1", "--num-val", "1", "--num-test", "1"]) == 0  # writing again replaces
    assert len(StreamingDataset(str(out / "train"))) == 1
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  sequence:\n    fsp: 10\n")
    assert main(["demo-data", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "fsp" in one_line_error(capsys)


def test_workers_write_the_files_one_process_writes(tmp_path):
    """`--workers 2`: clips made in two processes, written in order: every file byte for byte the same."""
    from vmas_lightning.cli.main import main

    common = ["demo-data", "--config", str(TINY_CONFIG), "--num-train", "3", "--num-val", "1", "--num-test", "2"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    assert main([*common, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    files = sorted(path.relative_to(tmp_path / "one") for path in (tmp_path / "one").rglob("*") if path.is_file())
    assert len([f for f in files if f.suffix == ".mp4"]) == 2 and any(f.name.startswith("chunk-") for f in files)
    assert files == sorted(path.relative_to(tmp_path / "two") for path in (tmp_path / "two").rglob("*") if path.is_file())
    for name in files:
        one, two = ((tmp_path / folder / name).read_bytes() for folder in ("one", "two"))
        if name.name == "index.json":  # litdata's index says when it was written
            one, two = ({k: v for k, v in json.loads(text).items() if k != "updated_at"} for text in (one, two))
        assert one == two, name
