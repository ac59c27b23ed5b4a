"""`VMASDataModule`: streams DISCO-MV shards (local folder or object store) with resumable loader state."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from litdata import StreamingDataLoader, StreamingDataset

from vmas_lightning.data.shards import decode_sample
from vmas_lightning.errors import VMASError
from vmas_lightning.objectives.beats import BeatConfig, beat_weights, overlap
from vmas_lightning.sequence import SequenceConfig


class ClipDataset(StreamingDataset):
    """Shard samples decoded in the loader's worker processes into training tensors.

    A stored clip longer than the window is cropped at a random frame-aligned start that depends
    only on (seed, epoch, sample index), so a resumed run crops exactly as the uninterrupted one.
    """

    def __init__(self, input_dir: str, sequence: SequenceConfig, beats: BeatConfig, load_audio: bool,
                 shuffle: bool, seed: int, random_crop: bool):
        super().__init__(input_dir, shuffle=shuffle, seed=seed, drop_last=False)
        self.sequence = sequence
        self.beats = beats
        self.load_audio = load_audio
        self.random_crop = random_crop
        self.crop_seed = seed

    def __getitem__(self, index: Any) -> dict[str, Any]:
        sample = decode_sample(super().__getitem__(index), load_audio=self.load_audio)
        seq = self.sequence
        num_frames = sample["frames"].shape[0]
        if num_frames < seq.num_frames:
            raise VMASError(
                f"clip {sample['id']} has {num_frames} frames, fewer than the {seq.num_frames} of a "
                f"{seq.duration_s}-s window at {seq.fps} fps: prepare the data with this config"
            )
        start = 0
        if num_frames > seq.num_frames and self.random_crop:
            flat_index = index.index if hasattr(index, "index") else int(index)
            rng = np.random.default_rng([self.crop_seed, self.current_epoch, flat_index])
            start = int(rng.integers(0, num_frames - seq.num_frames + 1))
        start_s = start / seq.fps
        first_token = seq.tokens_for(start_s)
        tokens = slice(first_token, first_token + seq.num_tokens)
        frames = torch.from_numpy(sample["frames"][start : start + seq.num_frames])
        music = sample["music_beats"][tokens]
        video = sample["video_beats"][tokens]
        overlaps = overlap(music, video, self.beats.match_window)
        item = {
            "id": sample["id"],
            "video": frames.permute(3, 0, 1, 2).float().div_(255.0),  # [3, F, H, W] in [0, 1]
            "tokens": torch.from_numpy(sample["tokens"][:, tokens]),
            "music_beats": torch.from_numpy(music),
            "video_beats": torch.from_numpy(video),
            "overlap": torch.from_numpy(overlaps),
            "beat_weights": torch.from_numpy(beat_weights(overlaps, self.beats.lam)),
        }
        if self.load_audio:
            first_sample = seq.samples_for(start_s)
            item["audio"] = torch.from_numpy(sample["audio"][first_sample : first_sample + seq.num_samples])[None]
        return item


class VMASDataModule(L.LightningDataModule):
    """Train / val / test streams of a dataset folder written by `vmas prepare` or `vmas demo-data`.

    Args:
        root: folder (or litdata-supported URL such as `s3://bucket/disco-mv`) holding `train/`,
            `val/` and `test/`.
        sequence: clip geometry; linked from `model.sequence` by the CLI.
        beats: `overlap` is recomputed from the stored beats with `beats.match_window` and the loss
            weights are `overlap + beats.lam`, so both can change without preparing the data again.
        batch_size: clips per device and step.
        num_workers: loader worker processes per device (decoding happens there).
        seed: shuffling and cropping seed (the same on every rank; litdata splits per rank).
        window_s: None trains on the configured sequence duration (crops only when the stored
            clips are longer).
        load_audio: decode the reference waveform; None: for validation and test only.
        test_split: split used by `vmas test` and `vmas predict`.
    """

    def __init__(
        self,
        root: str,
        sequence: SequenceConfig = SequenceConfig(),
        beats: BeatConfig = BeatConfig(),
        batch_size: int = 8,
        num_workers: int = 2,
        seed: int = 0,
        shuffle: bool = True,
        load_audio: Optional[bool] = None,
        test_split: str = "test",
    ):
        super().__init__()
        self.root = root
        self.sequence = sequence
        self.beats = beats
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.shuffle = shuffle
        self.load_audio = load_audio
        self.test_split = test_split

    def split_dir(self, split: str) -> str:
        if "://" in self.root:
            return f"{self.root.rstrip('/')}/{split}"
        path = Path(self.root)
        if not path.is_dir():
            raise VMASError(f"data folder {path} does not exist (make one with `vmas demo-data` or `vmas prepare`)")
        if not (path / split / "index.json").exists():
            present = sorted(p.name for p in path.iterdir() if (p / "index.json").exists())
            raise VMASError(f"data folder {path} has no '{split}' split (found: {', '.join(present) or 'none'})")
        return str(path / split)

    def dataset(self, split: str, train: bool) -> ClipDataset:
        load_audio = (not train) if self.load_audio is None else self.load_audio
        return ClipDataset(self.split_dir(split), self.sequence, self.beats, load_audio,
                           shuffle=train and self.shuffle, seed=self.seed, random_crop=train)

    def loader(self, split: str, train: bool) -> StreamingDataLoader:
        return StreamingDataLoader(
            self.dataset(split, train),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            drop_last=train,
            persistent_workers=False,
        )

    def setup(self, stage: str) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": (self.test_split,), "predict": (self.test_split,)}
        for split in splits.get(stage, ()):
            self.split_dir(split)  # fail at once, in one line, on a missing folder or split

    def train_dataloader(self) -> StreamingDataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> StreamingDataLoader:
        return self.loader("val", train=False)

    def test_dataloader(self) -> StreamingDataLoader:
        return self.loader(self.test_split, train=False)

    def predict_dataloader(self) -> StreamingDataLoader:
        return self.loader(self.test_split, train=False)
