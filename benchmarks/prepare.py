"""Curation cost: CPU seconds per minute of input video for each stage of `vmas prepare`.

Writes a synthetic video (a new texture every second, a tone soundtrack), then runs the stages of
`Curator` one by one on it, timing each with `time.process_time()` (this process, all its threads):
decode (PyAV, resample to the config's fps, resize and crop), embed/filter (sampled frames ->
embedder -> similarity), audio+separation (soundtrack at the codec rate, vocal removal), tokens
(codec), beats (onsets, optical flow), write (JPEG/FLAC encoding and the litdata writer). Prints JSON.

    python benchmarks/prepare.py [--config configs/tiny.yaml] [--seconds 60] [--separator none]
                                 [--embedder pixel_stats] [--source-size 640x360] [--source-fps 30]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vmas_lightning.beats import compute_beats
from vmas_lightning.data.frame_embedders import frame_similarity
from vmas_lightning.data.prepare import NUM_SAMPLED_FRAMES, PrepareOptions, clip_starts
from vmas_lightning.data.shards import ClipAnnotator, ClipRecord, ShardConfig, ShardWriter
from vmas_lightning.video_io import read_audio, read_video, write_video
from vmas_lightning.registry import FRAME_EMBEDDERS, SOURCE_SEPARATORS

ROOT = Path(__file__).resolve().parents[1]


def synthetic_video(path: Path, seconds: float, fps: float, width: int, height: int, sample_rate: int) -> Path:
    rng = np.random.default_rng(0)
    num_frames = round(seconds * fps)
    textures = [rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
                for _ in range(int(np.ceil(seconds)))]
    frames = np.stack([np.roll(textures[int(i / fps)], i, axis=1) for i in range(num_frames)])
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2).astype(np.float32)
    return write_video(path, frames, fps, audio, sample_rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="a vmas config, repeatable (stacked; default: configs/tiny.yaml)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--separator", default="none")
    parser.add_argument("--embedder", default="pixel_stats")
    parser.add_argument("--source-size", default="640x360")
    parser.add_argument("--source-fps", type=float, default=30.0)
    args = parser.parse_args()

    config = ShardConfig.from_configs(args.config or [ROOT / "configs" / "tiny.yaml"])
    seq = config.sequence
    options = PrepareOptions(clip_s=seq.duration_s, separator=args.separator, embedder=args.embedder)
    annotator = ClipAnnotator(config)
    embed, separate = FRAME_EMBEDDERS.build(options.embedder), SOURCE_SEPARATORS.build(options.separator)
    width, height = map(int, args.source_size.split("x"))
    cpu = dict.fromkeys(["decode", "embed_filter", "audio_separation", "tokens", "beats", "write"], 0.0)

    def timed(stage, fn, *a):
        start = time.process_time()
        out = fn(*a)
        cpu[stage] += time.process_time() - start
        return out

    with tempfile.TemporaryDirectory() as tmp:
        video_path = synthetic_video(Path(tmp) / "input.mp4", args.seconds, args.source_fps, width, height, seq.sample_rate)
        wall = time.perf_counter()
        video = timed("decode", read_video, video_path, seq.fps, seq.frame_size)
        picks = np.linspace(0, len(video.frames) - 1, NUM_SAMPLED_FRAMES).round().astype(int)
        similarity = timed("embed_filter", lambda: frame_similarity(embed(video.frames[picks])))
        audio = timed("audio_separation", lambda: separate(read_audio(video_path, seq.sample_rate), seq.sample_rate))
        starts = clip_starts(min(video.duration_s, len(audio) / seq.sample_rate), seq.duration_s, seq.duration_s,
                             len(video.frames), seq)
        with ShardWriter(Path(tmp) / "out", config) as writer:
            for index, start_s in enumerate(starts):
                frames = video.frames[seq.frames_for(start_s) : seq.frames_for(start_s) + seq.num_frames]
                wav = audio[seq.samples_for(start_s) : seq.samples_for(start_s) + seq.num_samples]
                with torch.no_grad():
                    tokens = timed("tokens", lambda: annotator.codec.encode(torch.from_numpy(wav)[None, None]))
                beats = timed("beats", compute_beats, wav, seq.sample_rate, frames, seq, config.beats)
                record = ClipRecord(f"bench-{index:04d}", "synthetic", start_s, frames, wav, tokens[0, :, : seq.num_tokens].numpy(),
                                    beats["music_beats"], beats["video_beats"])
                timed("write", writer.write, record)
            timed("write", writer.close)
        wall = time.perf_counter() - wall

    per_minute = 60.0 / args.seconds
    print(json.dumps({
        "config": args.config, "input_seconds": args.seconds, "source": f"{width}x{height}@{args.source_fps:g}",
        "separator": args.separator, "embedder": args.embedder, "clips": len(starts), "similarity": round(similarity, 3),
        "threads": torch.get_num_threads(),
        "cpu_s_per_input_minute": {stage: round(seconds * per_minute, 3) for stage, seconds in cpu.items()},
        "total_cpu_s_per_input_minute": round(sum(cpu.values()) * per_minute, 3),
    }, indent=1))


if __name__ == "__main__":
    main()
