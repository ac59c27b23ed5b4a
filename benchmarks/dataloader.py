"""Data loader throughput: clips per second per worker process at the paper's clip size.

Writes a small dataset of 10-s clips (96 frames of 224x224 with photo-like texture and motion, so
the JPEGs are as large as real video frames; random tokens and beats) through the shard writer,
then times `VMASDataModule.train_dataloader()` (JPEG decoding, tokens, beat weights,
normalisation to float, batch collation) with W worker processes. Prints JSON:
`clips_per_s_per_worker` from wall time (what a busy machine gives) and
`clips_per_cpu_s_per_worker` from the workers' CPU time (what one free core gives per worker).

    python benchmarks/dataloader.py [--clips 48] [--workers 1] [--batch-size 8] [--frame-size 224]
                                    [--augment configs/vmas.yaml]

`--augment CONFIG` turns on that config's `data.augment` (the upload augmentations), so its cost
per clip shows against the same run without it.
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from vmas_lightning.config_file import load_config
from vmas_lightning.config import VideoAugmentConfig
from vmas_lightning.data.datamodule import VMASDataModule
from vmas_lightning.data.shards import ClipRecord, ShardConfig, ShardWriter, pack_jpegs

ROOT = Path(__file__).resolve().parents[1]


def textured_frames(rng: np.random.Generator, num_frames: int, size: int) -> np.ndarray:
    """uint8 `[F, size, size, 3]`: a view panning over smooth multi-scale noise.

    Its quality-90 JPEGs take ~28 KB per 224x224 frame, on the heavy side of real video frames.
    """
    side = 2 * size
    canvas = sum(cv2.resize(rng.random((side // s, side // s, 3), dtype=np.float32), (side, side),
                            interpolation=cv2.INTER_CUBIC) / s**0.5 for s in (2, 8, 32))
    canvas = (255 * (canvas - canvas.min()) / np.ptp(canvas)).astype(np.uint8)
    shifts = np.linspace(0, size - 1, num_frames).astype(int)
    return np.stack([canvas[s : s + size, s : s + size] for s in shifts])


def write_dataset(root: Path, config: ShardConfig, clips: int, seed: int = 0) -> float:
    """Write `clips` random clips into `root/train`; returns the mean JPEG bytes per frame."""
    seq = config.sequence
    rng = np.random.default_rng(seed)
    frames = textured_frames(rng, seq.num_frames, seq.frame_size)
    with ShardWriter(root / "train", config) as writer:
        for index in range(clips):
            beats = (rng.random((2, seq.num_tokens)) < 0.05).astype(np.uint8)
            writer.write(ClipRecord(
                id=f"bench-{index:04d}", source="synthetic", start_s=0.0, frames=np.roll(frames, index, axis=2),
                audio=(0.1 * rng.standard_normal(seq.num_samples)).astype(np.float32),
                tokens=rng.integers(0, 2048, (seq.num_codebooks, seq.num_tokens)),
                music_beats=beats[0], video_beats=beats[1],
            ))
    return (len(pack_jpegs(frames)) - 4 * (seq.num_frames + 1)) / seq.num_frames


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--frame-size", type=int, default=224)
    parser.add_argument("--augment", default=None, help="A vmas config whose data.augment block to turn on.")
    args = parser.parse_args()
    augment = VideoAugmentConfig()
    if args.augment:
        augment = replace(load_config(args.augment, trainer=False).data.augment, enabled=True)

    config = ShardConfig.from_configs(ROOT / "configs" / "tiny.yaml")
    config = replace(config, sequence=replace(config.sequence, frame_size=args.frame_size))
    with tempfile.TemporaryDirectory() as tmp:
        jpeg_bytes = write_dataset(Path(tmp), config, args.clips)
        dm = VMASDataModule(root=tmp, sequence=config.sequence, beats=config.beats, batch_size=args.batch_size, num_workers=args.workers,
                            augment=augment)
        cpu_before = _children_cpu_s()
        iterator = iter(dm.train_dataloader())
        first = len(next(iterator)["id"])  # worker start-up and the first batch are not in the wall time
        start, clips = time.perf_counter(), 0
        for batch in iterator:
            clips += len(batch["id"])
        seconds = time.perf_counter() - start
        del iterator  # the workers have exited: their CPU time is in the children's usage
        worker_cpu_s = _children_cpu_s() - cpu_before
    per_s = clips / seconds
    print(json.dumps({
        "clips_per_s": round(per_s, 2),
        "clips_per_s_per_worker": round(per_s / max(1, args.workers), 2),
        "clips_per_cpu_s_per_worker": round((first + clips) / worker_cpu_s, 2) if args.workers else None,
        "target_clips_per_s_per_worker": 4.0,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "frames_per_clip": config.sequence.num_frames,
        "frame_size": args.frame_size,
        "jpeg_bytes_per_frame": round(jpeg_bytes),
        "clips_timed": clips,
        "augment": augment.enabled,
    }))


if __name__ == "__main__":
    main()
