"""`VMASDataModule`: streams DISCO-MV shards (local folder or object store) with resumable loader state."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from litdata import StreamingDataLoader, StreamingDataset

from vmas_lightning.beats import BeatConfig, overlap
from vmas_lightning.config import DataConfig, VideoAugmentConfig
from vmas_lightning.config_file import check_known
from vmas_lightning.data.augment import VideoAugment
from vmas_lightning.data.object_store import check_dataset, read_text
from vmas_lightning.data.shards import (
    ANNOTATION_NAME, ShardConfig, annotation_differences, decode_sample, packed_frame_count, unpack_jpegs,
)
from vmas_lightning.video_io import probe, read_video
from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.files import is_remote
from vmas_lightning.sequence import SequenceConfig


def resolve_source(root: str, source: str) -> Optional[Path]:
    """The video file a shard's `source` names, if it exists here: an absolute path (`vmas prepare`)
    or one relative to the dataset folder `root` (`vmas demo-data`); None otherwise (`synthetic`,
    a file not on this machine, a dataset in object storage with a relative source)."""
    path = Path(source)
    if not path.is_absolute():
        if is_remote(root):
            return None
        path = Path(root) / path
    return path if path.is_file() else None


def window_meta(meta: dict[str, Any], start_s: float, duration_s: float) -> dict[str, Any]:
    """A clip's metadata for the window [start_s, start_s + duration_s): event times (`events_s`, and
    the `notes_hz` played at them) of demo clips are shifted to the window and cut to it."""
    if "events_s" not in meta:
        return meta
    inside = [i for i, t in enumerate(meta["events_s"]) if start_s <= t < start_s + duration_s]
    window = {**meta, "events_s": [round(meta["events_s"][i] - start_s, 4) for i in inside]}
    if "notes_hz" in meta:
        window["notes_hz"] = [meta["notes_hz"][i] for i in inside]
    return window


class ClipDataset(StreamingDataset):
    """Shard samples decoded in the loader's worker processes into training tensors.

    A stored clip longer than the window is cropped at a random frame-aligned start, and with
    `augment` its frames are augmented (`data.augment`); both depend only on (seed, epoch, sample
    index), so a resumed run crops and augments exactly as the uninterrupted one.

    With `frames_from_source` the frames come from the clip's span of its source video instead,
    read by `vmas generate`'s code (`read_video` at the model's rate and size): the user's path.

    Args:
        root: the dataset folder, against which relative `source` paths are resolved.
    """

    def __init__(self, input_dir: str, sequence: SequenceConfig, beats: BeatConfig, load_audio: bool,
                 shuffle: bool, seed: int, random_crop: bool, augment: Optional[VideoAugmentConfig] = None,
                 root: str = "", frames_from_source: bool = False):
        super().__init__(input_dir, shuffle=shuffle, seed=seed, drop_last=False)
        self.sequence = sequence
        self.beats = beats
        self.load_audio = load_audio
        self.random_crop = random_crop
        self.crop_seed = seed
        self.augment = VideoAugment(augment, sequence.fps) if augment is not None and augment.enabled else None
        self.root = root
        self.frames_from_source = frames_from_source

    def __getitem__(self, index: Any) -> dict[str, Any]:
        stored = super().__getitem__(index)
        seq = self.sequence
        num_frames = packed_frame_count(stored["frames"])
        flat_index = index.index if hasattr(index, "index") else int(index)
        start = 0
        if num_frames > seq.num_frames and self.random_crop:
            rng = np.random.default_rng([self.crop_seed, self.current_epoch, flat_index])
            start = int(rng.integers(0, num_frames - seq.num_frames + 1))
        sample = decode_sample(stored, load_audio=self.load_audio, load_frames=not self.frames_from_source,
                               frames=slice(start, start + seq.num_frames))
        source = resolve_source(self.root, sample["source"])
        if source is not None:
            sample["source"] = str(source)
        if self.frames_from_source:
            sample["frames"] = self.source_frames(source, sample, sample["start_s"] + start / seq.fps)
        if self.augment is not None:  # its own stream: the crop's draws stay those of an unaugmented run
            rng = np.random.default_rng([self.crop_seed, self.current_epoch, flat_index, 1])
            sample["frames"] = self.augment(sample["frames"], rng)
        start_s = start / seq.fps
        first_token = seq.tokens_for(start_s)
        tokens = slice(first_token, first_token + seq.num_tokens)
        # uint8 through the loader (a quarter of float32's shared memory); the model converts on its device
        video = torch.from_numpy(sample["frames"]).permute(3, 0, 1, 2).contiguous()  # [3, F, H, W]: fast collation
        music = sample["music_beats"][tokens]
        visual = sample["video_beats"][tokens]
        item = {
            "id": sample["id"],
            "source": sample["source"],  # the source video's path (demo clips: "synthetic")
            "start_s": sample["start_s"] + start_s,  # the window's start in the source video
            "video": video,  # uint8 [3, F, H, W], 0-255
            "tokens": torch.from_numpy(sample["tokens"][:, tokens]),
            "music_beats": torch.from_numpy(music),
            "video_beats": torch.from_numpy(visual),
            "overlap": torch.from_numpy(overlap(music, visual, self.beats.match_window)),
            "meta": json.dumps(window_meta(sample["meta"], start_s, seq.duration_s)),
            "caption": sample["caption"],  # "" when the clip has none
        }
        if self.load_audio:
            first_sample = seq.samples_for(start_s)
            item["audio"] = torch.from_numpy(sample["audio"][first_sample : first_sample + seq.num_samples])[None]
        return item

    def source_frames(self, source: Optional[Path], sample: dict[str, Any], start_s: float) -> np.ndarray:
        """uint8 `[F, H, W, 3]`: the clip's window of its source video as `vmas generate` reads a file;
        a source up to two frames short is completed by holding its last frame, as generation does."""
        seq = self.sequence
        if source is None:
            raise VMASError(f"clip {sample['id']}: its source '{sample['source']}' is not a video file here "
                            "(data.test_input video_file needs each test clip's source video)")
        first = seq.frames_for(start_s)  # the frame `vmas prepare` cut the clip at
        frames = read_video(source, fps=seq.fps, size=seq.frame_size, start_s=first / seq.fps,
                            max_seconds=(first + seq.num_frames) / seq.fps, sampling=seq.frame_sampling).frames
        missing = seq.num_frames - frames.shape[0]
        if missing > 2:
            raise InputFileError(source, f"{frames.shape[0]} frames from {start_s:g} s, clip {sample['id']} needs {seq.num_frames}")
        return np.concatenate([frames, np.repeat(frames[-1:], max(0, missing), axis=0)])[: seq.num_frames]


class VMASDataModule(L.LightningDataModule):
    """Train / val / test streams of a dataset folder written by `vmas prepare` or `vmas demo-data`.

    Its arguments are the fields of `config.DataConfig` (the `data:` section), by keyword; LightningCLI
    reads them from `DataConfig(**settings)` below (jsonargparse resolves `**settings` through that call).
    """

    def __init__(self, **settings: Any):
        super().__init__()
        check_known(DataConfig, settings, "data")
        config = DataConfig(**settings)
        if config.root is None:
            raise VMASError("data.root is not set: give the dataset folder (--data.root, or data.root in the config)")
        self.config = config
        self._train_loader: Optional[StreamingDataLoader] = None
        self._resumed_train_state: Optional[dict[str, Any]] = None

    def split_dir(self, split: str) -> str:
        if is_remote(self.config.root):
            return f"{self.config.root.rstrip('/')}/{split}"
        path = Path(self.config.root)
        if not path.is_dir():
            raise VMASError(f"data folder {path} does not exist (make one with `vmas demo-data` or `vmas prepare`)")
        if not (path / split / "index.json").exists():
            present = sorted(p.name for p in path.iterdir() if (p / "index.json").exists())
            raise VMASError(f"data folder {path} has no '{split}' split (found: {', '.join(present) or 'none'})")
        return str(path / split)

    def dataset(self, split: str, train: bool, frames_from_source: bool = False) -> ClipDataset:
        load_audio = (not train) if self.config.load_audio is None else self.config.load_audio
        return ClipDataset(self.split_dir(split), self.config.sequence, self.config.beats, load_audio,
                           shuffle=train and self.config.shuffle, seed=self.config.seed, random_crop=train,
                           augment=self.config.augment if train else None, root=self.config.root,
                           frames_from_source=frames_from_source)

    def loader(self, split: str, train: bool, frames_from_source: bool = False) -> StreamingDataLoader:
        return StreamingDataLoader(
            self.dataset(split, train, frames_from_source),
            batch_size=self.config.batch_size,
            num_workers=self.config.num_workers,
            drop_last=train,
            persistent_workers=False,
            # Worker seeds come from this generator, not the global RNG: a resumed run's dropout draws
            # stay those of the uninterrupted run.
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    def check_annotation(self, split: str) -> None:
        """Fail in one line when the split's `annotation.json` records other settings than the config's
        (geometry, codec, beats; `data.shards.annotation_settings`); warn once when it has none."""
        where = self.split_dir(split)
        if not is_remote(where):
            path = Path(where) / ANNOTATION_NAME
            text = path.read_text(encoding="utf-8") if path.is_file() else None
        else:
            text = read_text(f"{where}/{ANNOTATION_NAME}") if where.startswith("s3://") else None
        if text is None:
            rank_zero_warn(f"{where}: no {ANNOTATION_NAME} (shards made before vmas recorded their settings): the "
                           "geometry, codec and beat settings they were made with cannot be checked against the "
                           "config; prepare the data again to have them checked")
            return
        recorded = json.loads(text)
        if self.config.codec is None:  # not compared: None on both sides
            recorded.pop("model.codec", None)
        differences = annotation_differences(recorded, ShardConfig(self.config.sequence, self.config.codec, self.config.beats))
        if differences:
            raise VMASError(f"{where}: made with other settings than the config's ({'; '.join(differences)}); "
                            "prepare the data again with this config (vmas prepare/demo-data --config ...)")

    def check_geometry(self, split: str) -> None:
        """Fail in one line when the split's first clip does not fit `sequence` (data prepared with another config)."""
        seq = self.config.sequence
        stored = StreamingDataset(self.split_dir(split))[0]
        num_frames = packed_frame_count(stored["frames"])
        height, width = unpack_jpegs(stored["frames"], slice(0, 1)).shape[1:3]
        num_codebooks, num_tokens = np.asarray(stored["tokens"]).shape
        problems = []
        if num_frames < seq.num_frames or num_tokens < seq.num_tokens:
            problems.append(f"{num_frames} frames / {num_tokens} token steps, fewer than the {seq.num_frames} / "
                            f"{seq.num_tokens} of a {seq.duration_s}-s clip")
        if (height, width) != (seq.frame_size, seq.frame_size):
            problems.append(f"{width}x{height} frames, not {seq.frame_size}x{seq.frame_size}")
        if num_codebooks != seq.num_codebooks:
            problems.append(f"{num_codebooks} codebooks, not {seq.num_codebooks}")
        if problems:
            raise VMASError(f"{self.config.root}/{split}: clip {stored['id']} has {'; '.join(problems)}: "
                            "prepare the data with the training config (vmas prepare/demo-data --config ...)")

    def setup(self, stage: str) -> None:
        """Fail at once, in one line, on a missing folder or split, or data made with other annotation
        settings or for another clip geometry; in object storage also on a wrong bucket, missing
        credentials or an unreachable endpoint."""
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": (self.config.test_split,), "predict": (self.config.test_split,)}
        if is_remote(self.config.root):
            check_dataset(self.config.root, splits.get(stage, ()))
        for split in splits.get(stage, ()):
            self.check_annotation(split)  # also checks that a local folder and split exist
            self.check_geometry(split)
        if stage in ("test", "predict") and self.config.test_input == "video_file":
            self.check_sources(self.config.test_split)

    def check_sources(self, split: str) -> None:
        """Fail in one line, before any generation, unless every clip of `split` names a source video
        that exists here and has a video stream (`data.test_input: video_file`)."""
        dataset = StreamingDataset(self.split_dir(split))
        sources = sorted({dataset[index]["source"] for index in range(len(dataset))})
        problems = []
        for source in sources:
            path = resolve_source(self.config.root, source)
            try:
                if path is None:
                    raise InputFileError(source, "not a file here")
                if not probe(path).has_video:
                    raise InputFileError(path, "no video stream")
            except InputFileError as err:
                problems.append(str(err))
        if problems:
            shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
            raise VMASError(f"data.test_input video_file: {len(problems)} of the {len(sources)} source videos of "
                            f"{self.split_dir(split)} cannot be read ({shown}); use data.test_input shard_frames "
                            "or make the sources available (relative paths resolve against data.root)")

    def train_dataloader(self) -> StreamingDataLoader:
        loader = self.loader("train", train=True)
        if len(loader) == 0:
            devices = self.trainer.world_size if self.trainer is not None else 1
            raise VMASError(f"{self.split_dir('train')}: too few clips for one full training batch of "
                            f"data.batch_size={self.config.batch_size} on each of {devices} device(s); "
                            "lower data.batch_size or add clips")
        if self._resumed_train_state is not None:
            loader.load_state_dict(self._resumed_train_state)
        self._train_loader = loader
        return loader

    def state_dict(self) -> dict[str, Any]:
        """The train loader's position (epoch, samples served per worker), saved in checkpoints."""
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Applied to every train loader made before the first batch: Lightning may build one early
        # (to count steps for the LR schedule) and drop its own restored position. A strategy that
        # restores after its setup (FSDP2: ModelParallelStrategy) has built that loader already.
        self._resumed_train_state = state_dict.get("train_loader")
        if self._train_loader is not None and self._resumed_train_state is not None:
            self._train_loader.load_state_dict(self._resumed_train_state)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            self._resumed_train_state = None
        return batch

    def val_dataloader(self) -> StreamingDataLoader:
        return self.loader("val", train=False)

    def test_dataloader(self) -> StreamingDataLoader:
        return self.loader(self.config.test_split, train=False, frames_from_source=self.config.test_input == "video_file")

    def predict_dataloader(self) -> StreamingDataLoader:
        return self.loader(self.config.test_split, train=False, frames_from_source=self.config.test_input == "video_file")
