"""VMASDataModule: batch contents, one-line errors, and exact mid-epoch resume of the sample order."""
import json

import lightning as L
import numpy as np
import pytest
import torch
from litdata import StreamingDataset
from lightning.pytorch.callbacks import ModelCheckpoint

from vmas_lightning.beats import BeatConfig
from vmas_lightning.data.datamodule import VMASDataModule
from vmas_lightning.data.shards import decode_sample
from vmas_lightning.errors import VMASError
from vmas_lightning.sequence import SequenceConfig

TINY = SequenceConfig(frame_size=64)


def test_batch_tensors(demo_data):
    dm = VMASDataModule(root=str(demo_data), sequence=TINY, beats=BeatConfig(match_window=0), batch_size=2, num_workers=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (2, 3, 96, 64, 64) and batch["video"].dtype == torch.uint8  # float on the device
    assert batch["tokens"].shape == (2, 4, 500) and batch["tokens"].dtype == torch.int64
    for key in ("music_beats", "video_beats", "overlap"):
        assert batch[key].shape == (2, 500)
    # match_window 0: an overlap is a step with both beats (the stored beats, matched when read)
    torch.testing.assert_close(batch["overlap"], batch["music_beats"] * batch["video_beats"])
    assert "audio" not in batch
    val = next(iter(dm.val_dataloader()))
    assert val["audio"].shape == (2, 1, 320000)


def test_window_crops_inside_longer_clips(demo_data):
    short = SequenceConfig(frame_size=64, duration_s=5.0)
    dm = VMASDataModule(root=str(demo_data), sequence=short, batch_size=4, num_workers=0)
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape[2] == 48 and batch["tokens"].shape[-1] == 250
    stored = {clip["id"]: clip for clip in map(decode_sample, StreamingDataset(str(demo_data / "train")))}
    starts = set()
    for i, clip_id in enumerate(batch["id"]):
        clip = stored[clip_id]
        frames = batch["video"][i].permute(1, 2, 3, 0).numpy()
        # the window is a run of 48 stored frames; its tokens and beats start at the same time
        start = next(s for s in range(49) if np.array_equal(clip["frames"][s : s + 48], frames))
        first_token = short.tokens_for(start / short.fps)
        np.testing.assert_array_equal(batch["tokens"][i].numpy(), clip["tokens"][:, first_token : first_token + 250])
        np.testing.assert_array_equal(batch["music_beats"][i].numpy(), clip["music_beats"][first_token : first_token + 250])
        # the ground-truth cut times and notes move with the window
        meta = json.loads(batch["meta"][i])
        start_s = start / short.fps
        inside = [(t, f) for t, f in zip(clip["meta"]["events_s"], clip["meta"]["notes_hz"]) if start_s <= t < start_s + 5.0]
        assert meta["events_s"] == [round(t - start_s, 4) for t, _ in inside]
        assert meta["notes_hz"] == [f for _, f in inside] and meta["style"] == clip["meta"]["style"]
        starts.add(start)
    assert len(starts) > 1  # random starts, not always the first frame


def test_each_rank_streams_its_own_part_deterministically(demo_data, monkeypatch):
    def ids(rank, seed):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        dm = VMASDataModule(root=str(demo_data), sequence=TINY, batch_size=2, num_workers=0, seed=seed)
        return [i for batch in dm.train_dataloader() for i in batch["id"]]

    rank0, rank1 = ids(0, seed=3), ids(1, seed=3)
    assert len(rank0) == len(rank1) == 4 and not set(rank0) & set(rank1)
    assert sorted(rank0 + rank1) == [f"demo-train-{i:04d}" for i in range(8)]
    assert ids(0, seed=3) == rank0  # the same seed gives the same split and order
    assert ids(0, seed=4) + ids(1, seed=4) != rank0 + rank1


def test_missing_folder_and_split_are_one_line_errors(tmp_path, demo_data):
    with pytest.raises(VMASError, match="does not exist"):
        VMASDataModule(root=str(tmp_path / "nowhere")).setup("fit")
    with pytest.raises(VMASError, match=r"has no 'holdout' split \(found: test, train, val\)"):
        VMASDataModule(root=str(demo_data), test_split="holdout").setup("test")
    # 8 training clips never fill a batch of 16: say so instead of training zero steps
    with pytest.raises(VMASError, match=r"train: too few clips for one full training batch of data.batch_size=16"):
        VMASDataModule(root=str(demo_data), sequence=TINY, batch_size=16, num_workers=0).train_dataloader()
    assert len(VMASDataModule(root=str(demo_data), sequence=TINY, batch_size=8, num_workers=0).train_dataloader()) == 1


@pytest.mark.parametrize("sequence, problem", [
    (SequenceConfig(frame_size=224), "model.sequence.frame_size 64 in the shards, 224 in the config"),
    (SequenceConfig(frame_size=64, duration_s=12.0), "96 frames / 500 token steps, fewer than the 115 / 600"),
    (SequenceConfig(frame_size=64, num_codebooks=8), "model.sequence.num_codebooks 4 in the shards, 8 in the config"),
])
def test_data_made_for_another_geometry_is_a_one_line_error(demo_data, sequence, problem):
    with pytest.raises(VMASError, match=problem) as err:
        VMASDataModule(root=str(demo_data), sequence=sequence).setup("fit")
    assert "\n" not in str(err.value)


TINY_CODEC = {"name": "encodec", "size": "tiny", "seed": 0}  # configs/tiny.yaml's, which made demo_data


def test_shards_record_their_annotation_settings(demo_data):
    recorded = json.loads((demo_data / "train" / "annotation.json").read_text())
    assert recorded == {
        "model.sequence.fps": 9.6, "model.sequence.frame_size": 64, "model.sequence.sample_rate": 32000,
        "model.sequence.token_rate": 50.0, "model.sequence.num_codebooks": 4, "model.sequence.frame_sampling": "last",
        "model.codec": {**TINY_CODEC, "pretrained": None, "num_codebooks": 4, "config": None},  # every option
        "data.beats.onset_detector": {"name": "onset_peaks", "hop_length": 512, "window_s": 0.1, "average_s": 0.5,
                                      "delta": 0.2, "min_interval_s": 0.25},
        "data.beats.optical_flow": {"name": "farneback", "pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3,
                                    "poly_n": 5, "poly_sigma": 1.2, "flags": 0},
        "data.beats.peak_window": 25, "data.beats.min_flow": 0.1, "data.beats.min_prominence": 0.5,
        "data.beats.flow_fps": 15.0,
    }


@pytest.mark.parametrize("beats, codec, problem", [
    (BeatConfig(peak_window=31), TINY_CODEC, "data.beats.peak_window 25 in the shards, 31 in the config"),
    (BeatConfig(onset_detector="librosa", min_flow=0.2), TINY_CODEC,
     "data.beats.min_flow 0.1 in the shards, 0.2 in the config; data.beats.onset_detector.name 'onset_peaks' in the "
     "shards, 'librosa' in the config"),  # another plugin: its name, not each of its options
    (BeatConfig(), "encodec", "model.codec.size 'tiny' in the shards, '32khz' in the config"),
    (BeatConfig(optical_flow={"name": "farneback", "winsize": 9}), TINY_CODEC,
     "data.beats.optical_flow.winsize 15 in the shards, 9 in the config"),
])
def test_data_annotated_with_other_settings_is_refused_in_one_line(demo_data, beats, codec, problem):
    with pytest.raises(VMASError) as err:
        VMASDataModule(root=str(demo_data), sequence=TINY, beats=beats, codec=codec).setup("fit")
    assert str(err.value) == (f"{demo_data}/train: made with other settings than the config's ({problem}); "
                              "prepare the data again with this config (vmas prepare/demo-data --config ...)")


def test_settings_read_when_loading_are_not_compared(demo_data):
    """match_window acts when the data is read: any value fits the shards."""
    VMASDataModule(root=str(demo_data), sequence=TINY, beats=BeatConfig(match_window=12), codec=TINY_CODEC).setup("fit")


def test_shards_without_recorded_settings_warn_that_they_cannot_be_checked(demo_data, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(demo_data, old)
    (old / "val" / "annotation.json").unlink()
    with pytest.warns(UserWarning, match=rf"{old}/val: no annotation.json \(shards made before vmas recorded their "
                                         "settings\): the geometry, codec and beat settings"):
        VMASDataModule(root=str(old), sequence=TINY, beats=BeatConfig(peak_window=31), codec=TINY_CODEC).setup("validate")


class RecordIds(L.LightningModule):
    """A minimal module that records the ids of every training batch it sees."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[str] = []

    def training_step(self, batch, batch_idx):
        self.seen.extend(batch["id"])
        return (self.weight * batch["tokens"].float().mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(demo_data, root, max_steps, ckpt_path=None):
    module = RecordIds()
    dm = VMASDataModule(root=str(demo_data), sequence=TINY, batch_size=2, num_workers=1, seed=7)
    trainer = L.Trainer(
        default_root_dir=root, max_steps=max_steps, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
        callbacks=[ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=1, save_top_k=-1)],
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module.seen


def test_resume_mid_epoch_continues_the_same_sample_order(demo_data, tmp_path):
    straight = _fit(demo_data, tmp_path / "straight", max_steps=6)  # 4 steps per epoch: crosses an epoch
    first = _fit(demo_data, tmp_path / "split", max_steps=3)
    resumed = _fit(demo_data, tmp_path / "split", max_steps=6, ckpt_path=tmp_path / "split" / "ckpt" / "epoch=0-step=3.ckpt")
    assert len(straight) == 12 and first == straight[:6]
    assert first + resumed == straight
    assert sorted(straight[:8]) == sorted(f"demo-train-{i:04d}" for i in range(8))  # one epoch = every clip once


def test_settings_recorded_before_specs_were_expanded_still_match():
    """An annotation.json written with short specs (`onset_peaks`, the codec as typed) fits the same
    config, and a real difference inside a short spec is still named by its option."""
    from vmas_lightning.data.shards import ShardConfig, annotation_differences, annotation_settings

    config = ShardConfig(TINY, TINY_CODEC, BeatConfig())
    recorded = {**annotation_settings(config), "model.codec": TINY_CODEC,
                "data.beats.onset_detector": "onset_peaks", "data.beats.optical_flow": "farneback"}
    assert annotation_differences(recorded, config) == []
    recorded["data.beats.optical_flow"] = {"name": "farneback", "levels": 5}
    assert annotation_differences(recorded, config) == ["data.beats.optical_flow.levels 5 in the shards, 3 in the config"]


def test_shards_written_before_frame_sampling_existed_were_sampled_last():
    """A setting added later (`compat.ADDED_SETTINGS`) takes, in older shards that lack it, the value they
    were made with: such shards fit `frame_sampling: last` and are named as different for `average`."""
    from dataclasses import replace

    from vmas_lightning.data.shards import ShardConfig, annotation_differences, annotation_settings

    config = ShardConfig(TINY, TINY_CODEC, BeatConfig())
    recorded = annotation_settings(config)
    del recorded["model.sequence.frame_sampling"]
    assert annotation_differences(recorded, config) == []
    averaged = ShardConfig(replace(TINY, frame_sampling="average"), TINY_CODEC, BeatConfig())
    assert annotation_differences(recorded, averaged) == ["model.sequence.frame_sampling 'last' in the shards, 'average' in the config"]


def test_test_clips_read_from_their_video_files_are_what_vmas_generate_reads(demo_data):
    """`data.test_input: video_file`: each test clip's frames are its source video read by the same
    code as `vmas generate` (`Generation.read`: `read_video` at the model's rate and size); the music,
    tokens and labels stay the shard's; `source` comes resolved against the dataset folder."""
    from vmas_lightning.video_io import read_video

    batches = {}
    for test_input in ("shard_frames", "video_file"):
        dm = VMASDataModule(root=str(demo_data), sequence=TINY, batch_size=4, num_workers=0, test_input=test_input)
        dm.setup("test")
        batches[test_input] = next(iter(dm.test_dataloader()))
    shard, files = batches["shard_frames"], batches["video_file"]
    for key in ("tokens", "audio", "music_beats", "video_beats", "overlap"):
        assert torch.equal(shard[key], files[key]), key
    assert shard["id"] == files["id"] and shard["source"] == files["source"]
    for index, source in enumerate(files["source"]):
        assert source == str(demo_data / "videos" / "test" / f"{files['id'][index]}.mp4")
        expected = read_video(source, fps=TINY.fps, size=TINY.frame_size).frames
        np.testing.assert_array_equal(files["video"][index].permute(1, 2, 3, 0).numpy(), expected)
    # the same pictures, rendered at 25 fps and 96 px and encoded, not the same pixels
    difference = (shard["video"].float() - files["video"].float()).abs().mean()
    assert 0.5 < difference < 20


def test_a_missing_or_broken_source_video_stops_the_file_path_in_one_line(demo_data, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(demo_data, copy)
    (copy / "videos" / "test" / "demo-test-0001.mp4").unlink()
    (copy / "videos" / "test" / "demo-test-0002.mp4").write_bytes(b"not a video")
    with pytest.raises(VMASError) as error:
        VMASDataModule(root=str(copy), sequence=TINY, num_workers=0, test_input="video_file").setup("test")
    message = str(error.value)
    assert "\n" not in message and "2 of the 4 source videos" in message
    assert "videos/test/demo-test-0001.mp4: not a file here" in message and "demo-test-0002.mp4: not a readable media file" in message
    VMASDataModule(root=str(copy), sequence=TINY, num_workers=0).setup("test")  # the shard path needs no file
    with pytest.raises(VMASError, match="test_input"):
        VMASDataModule(root=str(copy), sequence=TINY, num_workers=0, test_input="frames").setup("test")
