"""`vmas test`'s MV-Align reads a clip's span of its source video at the native rate where the shard
names a source file that exists, else the model-rate frames, and says which in metrics.json."""
import csv
import json

import numpy as np
import pytest

from helpers import TINY_CONFIG
from media import blob_video, write_video
from vmas_lightning.cli.main import main
from vmas_lightning.data.datamodule import VMASDataModule
from vmas_lightning.data.demo import synthesize_clip
from vmas_lightning.data.shards import ClipAnnotator, ShardConfig, ShardWriter
from vmas_lightning.video_io import read_video
from vmas_lightning.evaluation import mv_align_peaks
from vmas_lightning.metrics.mv_align import MODEL_RATE_FRAMES, SOURCE_NATIVE_RATE

NATIVE_FPS, LEAD_S = 25.0, 2.0


@pytest.fixture(scope="module")
def sourced_data(tmp_path_factory):
    """Two demo test clips of the tiny config in a test split, prepared as `vmas prepare` would from
    a source video: a still blob that jumps at the clip's cuts, 96 px at 25 fps, with the clip's
    music, after a 2-s lead-in, so the clip starts at 2 s. Clip 0 names that file as its source;
    clip 1 names a file that does not exist."""
    root = tmp_path_factory.mktemp("sourced")
    config = ShardConfig.from_configs(TINY_CONFIG)
    seq = config.sequence
    annotate = ClipAnnotator(config)
    clips = []
    with ShardWriter(root / "data" / "test", config) as writer:
        for index in range(2):
            clip = synthesize_clip(3, "test", index, seq)
            events = np.array(clip["meta"]["events_s"]) + LEAD_S
            audio = np.concatenate([np.zeros(round(LEAD_S * seq.sample_rate), np.float32), clip["audio"]])
            path = write_video(root / f"source{index}.mp4", blob_video(events, NATIVE_FPS, LEAD_S + seq.duration_s, 96),
                               NATIVE_FPS, audio, seq.sample_rate)
            first = seq.frames_for(LEAD_S)
            frames = read_video(path, fps=seq.fps, size=seq.frame_size).frames[first : first + seq.num_frames]
            source = path if index == 0 else root / "gone.mp4"
            writer.write(annotate(clip["id"], str(source), LEAD_S, frames, clip["audio"], clip["meta"]))
            clips.append(clip)
    return root / "data", clips


def test_the_source_at_its_native_rate_where_it_exists_else_the_model_rate_frames(sourced_data):
    data, clips = sourced_data
    seq = ShardConfig.from_configs(TINY_CONFIG).sequence
    dm = VMASDataModule(root=str(data), sequence=seq, batch_size=2, num_workers=0)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["source"][0].endswith("source0.mp4") and batch["start_s"].tolist() == [LEAD_S, LEAD_S]
    native, model_rate = mv_align_peaks(batch, seq, from_source=True)
    assert (native.protocol, native.fps) == (SOURCE_NATIVE_RATE, NATIVE_FPS)
    assert (model_rate.protocol, model_rate.fps) == (MODEL_RATE_FRAMES, seq.fps)
    # one peak per cut, on the 25-fps frame showing it, counted from the clip's start (not the file's)
    events = np.array(clips[0]["meta"]["events_s"])
    np.testing.assert_allclose(native.times, np.round((events + LEAD_S) * NATIVE_FPS) / NATIVE_FPS - LEAD_S, atol=1e-6)
    assert [peaks.protocol for peaks in mv_align_peaks(batch, seq, from_source=False)] == [MODEL_RATE_FRAMES] * 2


def test_metrics_json_says_which_clips_followed_the_protocol(sourced_data, tiny_ckpt, tmp_path):
    data, _ = sourced_data
    out = tmp_path / "test"
    assert main(["test", "--config", str(TINY_CONFIG), "--data.root", str(data), "--data.num_workers", "0",
                 "--data.batch_size", "2", "--trainer.default_root_dir", str(tmp_path),
                 "--trainer.enable_progress_bar", "false", "--model.evaluation.output_dir", str(out),
                 "--model.evaluation.save_audio", "false", "--ckpt_path", str(tiny_ckpt)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mv_align_protocol"] == "mixed" and "MV-Align on the model-rate frames for some clips" in metrics["note"]
    truth, other = metrics["reference_rows"]["ground_truth"], metrics["reference_rows"]["another_clip"]
    assert truth["mv_align_protocol"] == "mixed"
    # the clips' cut-on-note music against their own cuts (0.93, z 3.8) and another clip's (0.03, z -0.9)
    assert truth["mv_align"] > 0.6 > 0.3 > other["mv_align"] and truth["alignment_z"] > 2 > other["alignment_z"]
    with open(out / "clips.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["mv_align_protocol"] for row in rows] == [SOURCE_NATIVE_RATE, MODEL_RATE_FRAMES]
    assert all(row["alignment_percentile"] for row in rows)


def test_a_clip_inside_a_long_source_is_read_from_its_start(sourced_data):
    """`data.test_input: video_file` reads the clip's 10 s from 2 s into its source: exactly the frames
    `vmas prepare` cut from the whole file (`read_video` of all of it, sliced); a clip whose source
    is gone stops the file path before any generation, in one line."""
    import shutil

    from vmas_lightning.errors import VMASError

    data, clips = sourced_data
    seq = ShardConfig.from_configs(TINY_CONFIG).sequence
    with pytest.raises(VMASError, match=r"1 of the 2 source videos .*gone.mp4: not a file here"):
        VMASDataModule(root=str(data), sequence=seq, num_workers=0, test_input="video_file").setup("test")
    shutil.copy(data.parent / "source1.mp4", data.parent / "gone.mp4")  # the second clip's source back in place
    dm = VMASDataModule(root=str(data), sequence=seq, batch_size=2, num_workers=0, test_input="video_file")
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    first = seq.frames_for(LEAD_S)
    for index, name in enumerate(("source0.mp4", "gone.mp4")):
        whole = read_video(data.parent / name, fps=seq.fps, size=seq.frame_size).frames
        np.testing.assert_array_equal(batch["video"][index].permute(1, 2, 3, 0).numpy(), whole[first : first + seq.num_frames])
