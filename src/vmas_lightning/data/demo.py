"""Synthetic paired video-music clips for the CPU demo and the tests.

Each clip has a style (one of `STYLES`) that decides both modalities: the palette, shape and drift
speed of the picture, and the tempo, timbre and key of the music. Events fall on the beat grid of
the tempo; at each event the picture cuts (new background shade, the shape jumps) and a note
starts, so visual events coincide with musical onsets. `meta` records the style, the event times
and each note's fundamental, the ground truth of the demo's evaluation. Each clip also has a caption
that describes its music in words (`CAPTION_WORDS`: timbre, key, tempo; never the picture's colours),
drawn from its own stream, so captions leave the frames and the music as they were. Between events the picture drifts slowly
and the note decays. Everything is a function of (seed, split, index).
"""
from __future__ import annotations

import contextlib
import math
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from vmas_lightning.data.shards import SPLITS, ClipAnnotator, ClipRecord, ShardConfig, ShardWriter
from vmas_lightning.video_io import write_video
from vmas_lightning.sequence import SequenceConfig

MIN_EVENT_GAP_S = 0.55
TEST_VIDEOS_DIR = "videos/test"  # under the dataset folder


@dataclass(frozen=True)
class Style:
    name: str
    palette: tuple[tuple[int, int, int], tuple[int, int, int]]  # two background shades, alternating at cuts
    shape_color: tuple[int, int, int]
    shape: str  # "square" | "disc" | "stripes"
    drift: float  # shape drift between cuts, in frame widths per second
    tempo_bpm: float
    harmonics: tuple[float, ...]  # timbre: relative amplitudes of partials 1, 2, 3, ...
    decay_s: float
    root_hz: float  # key
    scale: tuple[int, ...]  # semitones above the root


STYLES = (
    Style("calm-blue", ((20, 40, 110), (30, 70, 150)), (230, 230, 250), "disc", 0.05, 80.0, (1.0, 0.2), 0.6, 220.0, (0, 2, 4, 7, 9)),
    Style("warm-pop", ((150, 60, 20), (200, 110, 30)), (255, 240, 120), "square", 0.06, 110.0, (1.0, 0.5, 0.33, 0.25), 0.35, 261.63, (0, 2, 4, 5, 7, 9, 11)),
    Style("dark-techno", ((15, 15, 15), (60, 0, 80)), (0, 255, 200), "stripes", 0.05, 140.0, (1.0, 0.0, 0.33, 0.0, 0.2), 0.15, 146.83, (0, 3, 5, 7, 10)),
    Style("green-folk", ((30, 90, 30), (80, 140, 50)), (250, 220, 180), "disc", 0.08, 96.0, (1.0, 0.6, 0.1), 0.9, 196.0, (0, 2, 3, 5, 7, 8, 10)),
)


# Words for each style's music, by aspect; a caption takes one phrase of each aspect, in a random order.
CAPTION_WORDS = {
    "calm-blue": {"timbre": ("soft pure flute-like tones", "gentle sine tones", "mellow airy notes that fade slowly"),
                  "key": ("in A major pentatonic", "A major pentatonic melody", "pentatonic melody in A"),
                  "tempo": ("slow tempo, 80 bpm", "slow and calm at 80 bpm", "relaxed 80 bpm pulse")},
    "warm-pop": {"timbre": ("bright buzzy sawtooth synth", "rich bright synth lead", "bright brassy synth notes"),
                 "key": ("in C major", "C major melody", "happy C major scale"),
                 "tempo": ("upbeat 110 bpm", "medium fast pop tempo, 110 bpm", "bouncy 110 bpm groove")},
    "dark-techno": {"timbre": ("short hollow square-wave plucks", "staccato hollow square blips", "clipped hollow techno stabs"),
                    "key": ("in D minor pentatonic", "D minor pentatonic riff", "minor pentatonic in D"),
                    "tempo": ("fast 140 bpm", "driving fast techno tempo, 140 bpm", "energetic 140 bpm beat")},
    "green-folk": {"timbre": ("ringing guitar-like plucked strings", "round mellow plucked tones", "long ringing folk strings"),
                   "key": ("in G minor", "G natural minor melody", "melancholic G minor scale"),
                   "tempo": ("moderate 96 bpm", "walking pace folk tempo, 96 bpm", "steady 96 bpm stroll")},
}


def demo_caption(style: str, rng: np.random.Generator) -> str:
    """A caption of `style`'s music: one phrase for its timbre, key and tempo each, in a random order."""
    phrases = [options[int(rng.integers(len(options)))] for options in CAPTION_WORDS[style].values()]
    return ", ".join(phrases[i] for i in rng.permutation(len(phrases)))


def clip_caption(seed: int, split: str, index: int, style: Optional[str] = None) -> str:
    """Clip `index`'s caption (its own style's, or `style`'s: a caption that contradicts the picture), drawn
    from a stream of its own (the frames and the music draw from another)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index, 1])
    return demo_caption(style or _clip_plan(seed, split, index, 1.0)[1].name, rng)


def event_times(rng: np.random.Generator, style: Style, duration_s: float) -> np.ndarray:
    """Beat-grid times (s) where a cut and a note happen: about 60% of the candidate beats, at least 3.

    Candidates are at least `MIN_EVENT_GAP_S` apart (every other beat of a fast tempo), so each cut
    stays a separate flow peak for the default video-beat window (0.5 s). The grid's phase is drawn
    per clip, so when the notes start is known only from the picture (or from earlier notes), never
    from the time since the clip began.
    """
    period = 60.0 / style.tempo_bpm
    step = period * math.ceil(MIN_EVENT_GAP_S / period)
    grid = np.arange(rng.uniform(0.1, 0.1 + step), duration_s - 0.2, step)
    keep = rng.random(grid.size) < 0.6
    keep[rng.choice(grid.size, size=min(3, grid.size), replace=False)] = True
    return grid[keep]


def render_frames(rng: np.random.Generator, style: Style, events: np.ndarray, num_frames: int, fps: float, size: int,
                  averaged: bool = False) -> np.ndarray:
    """uint8 `[F, size, size, 3]`: a shape drifting over a background that cuts at each event.

    Frame i is the picture at i / fps; with `averaged`, the time-average over its whole interval
    [(i - 1/2) / fps, (i + 1/2) / fps) as a camera with an open (360-degree) shutter films it: a
    cut inside the interval blends the two shots by the time each is on screen (what
    `read_video(..., sampling="average")` makes of a faster source).
    """
    ys, xs = np.mgrid[0:size, 0:size] / size
    positions = rng.uniform(0.25, 0.75, size=(events.size + 1, 2))
    directions = rng.normal(size=(events.size + 1, 2))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    starts = np.concatenate([[0.0], events])
    radius = 0.16
    shade = 0.85 + 0.3 * ys[..., None]  # vertical gradient

    def picture(seg: int, time: float) -> np.ndarray:
        """float32 `[size, size, 3]`: shot `seg` (the one after event seg - 1) at `time`."""
        cy, cx = positions[seg] + directions[seg] * style.drift * (time - starts[seg])
        image = np.array(style.palette[seg % 2], dtype=np.float32) * shade
        if style.shape == "disc":
            mask = (ys - cy) ** 2 + (xs - cx) ** 2 < radius**2
        elif style.shape == "square":
            mask = (np.abs(ys - cy) < radius) & (np.abs(xs - cx) < radius)
        else:
            mask = (np.abs(ys - cy) < 2 * radius) & (np.sin((xs - cx) * 40) > 0)
        image[mask] = style.shape_color
        return image

    times = np.arange(num_frames) / fps
    half = 0.5 / fps if averaged else 0.0
    first_shot = np.searchsorted(events, times - half, side="right")  # the shot on screen at the interval's start
    last_shot = np.searchsorted(events, times + half, side="left")  # ... and just before its end
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for i, time in enumerate(times):
        image = picture(last_shot[i], time)
        if first_shot[i] != last_shot[i]:  # a cut inside the interval (events are >= 0.55 s apart: one at most)
            after = (time + half - events[first_shot[i]]) * fps  # fraction of the interval after the cut
            image = after * image + (1.0 - after) * picture(first_shot[i], time)
        frames[i] = np.clip(image, 0, 255).astype(np.uint8)
    return frames


def draw_notes(rng: np.random.Generator, style: Style, num_events: int) -> np.ndarray:
    """Fundamental frequencies (Hz) `[E]` of the notes at the events: degrees of the style's scale."""
    degrees = [style.scale[rng.integers(len(style.scale))] for _ in range(num_events)]
    return style.root_hz * 2 ** (np.array(degrees, dtype=np.float64) / 12)


def render_music(style: Style, events: np.ndarray, notes_hz: np.ndarray, num_samples: int, sample_rate: int) -> np.ndarray:
    """float32 `[N]`: a decaying note of the style's timbre (`notes_hz[i]` at `events[i]`) over a soft drone."""
    t = np.arange(num_samples) / sample_rate
    music = 0.04 * np.sin(2 * np.pi * style.root_hz / 2 * t)
    for onset, freq in zip(events, notes_hz):
        start = int(round(onset * sample_rate))
        local = t[: num_samples - start]
        envelope = np.exp(-local / style.decay_s) * np.minimum(1.0, local / 0.003)
        tone = sum(a * np.sin(2 * np.pi * freq * (h + 1) * local) for h, a in enumerate(style.harmonics) if a)
        music[start:] += 0.5 * envelope * tone / sum(style.harmonics)
    return (0.8 * music / max(1e-6, np.abs(music).max())).astype(np.float32)


@dataclass(frozen=True)
class VideoForm:
    """How `vmas demo-data` writes a clip as a video file, as an upload would come: rendered at
    `fps` and `size` x `size` (not the model's rate and size), encoded with `codec` at `crf`."""

    fps: float = 30.0
    size: int = 256
    codec: str = "libx264"
    crf: int = 23


def _clip_plan(seed: int, split: str, index: int, duration_s: float) -> tuple[np.random.Generator, Style, np.ndarray]:
    """The clip's generator, style and event times, drawn first (frames and notes draw after them)."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    style = STYLES[int(rng.integers(len(STYLES)))]
    return rng, style, event_times(rng, style, duration_s)


def render_clip_frames(seed: int, split: str, index: int, duration_s: float, fps: float, size: int) -> np.ndarray:
    """uint8 `[floor(duration_s * fps), size, size, 3]`: the same clip as `synthesize_clip` (same
    style, cuts, shapes and drift), rendered at another frame rate and size, as a camera with a fast
    shutter films it (or an editor cuts it): each frame the picture at its time, so a cut falls on a
    frame boundary of the source, whatever the model's `frame_sampling`."""
    rng, style, events = _clip_plan(seed, split, index, duration_s)
    return render_frames(rng, style, events, math.floor(duration_s * fps + 1e-6), fps, size)


def synthesize_clip(seed: int, split: str, index: int, seq: SequenceConfig) -> dict:
    """Frames, audio and metadata of one demo clip of geometry `seq` (deterministic for its arguments)."""
    rng, style, events = _clip_plan(seed, split, index, seq.duration_s)
    frames = render_frames(rng, style, events, seq.num_frames, seq.fps, seq.frame_size, seq.frame_sampling == "average")
    notes_hz = draw_notes(rng, style, events.size)
    audio = render_music(style, events, notes_hz, seq.num_samples, seq.sample_rate)
    meta = {
        "style": style.name,
        "tempo_bpm": style.tempo_bpm,
        "events_s": [round(float(e), 4) for e in events],
        "notes_hz": [round(float(f), 3) for f in notes_hz],
        "split": split,
    }
    return {"id": f"demo-{split}-{index:04d}", "frames": frames, "audio": audio, "meta": meta,
            "caption": clip_caption(seed, split, index, style.name)}


def write_demo_dataset(
    out: str | Path,
    config: ShardConfig,
    counts: dict[str, int],
    seed: int = 0,
    test_videos: Optional[VideoForm] = VideoForm(),
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> dict[str, int]:
    """Write the demo splits through the shard writer and, with `test_videos`, every test clip as a
    video file of that form with its music, `<out>/videos/test/<id>.mp4`, which the clip's shard
    names as its `source` (relative to `out`): `vmas test --data.test_input video_file` reads it as
    `vmas generate` reads a user's file, and MV-Align follows the source protocol on it. Returns the
    clip count per split.

    With `workers` > 1 the clips are synthesised, tokenised and annotated in that many processes and
    written here in order: the same files as one process writes (each clip depends only on seed,
    split and index; the codec runs on one thread in every case, so its tokens do not depend on the
    machine's cores)."""
    out = Path(out)
    tasks = [(split, index) for split, count in counts.items() for index in range(count)]
    with contextlib.ExitStack() as stack:
        if workers > 1:  # fresh interpreters (as `vmas prepare`): a fork of a process whose torch threads hold locks can deadlock
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(
                workers, initializer=_start_demo_worker, initargs=(out, config, seed, test_videos)))
            records = pool.imap(_demo_record, tasks, chunksize=4)
        else:
            stack.callback(torch.set_num_threads, torch.get_num_threads())  # this process's threads, restored after
            stack.callback(_worker.clear)  # and the codec let go
            _start_demo_worker(out, config, seed, test_videos)
            records = map(_demo_record, tasks)
        writers = {split: stack.enter_context(ShardWriter(out / split, config)) for split in counts}
        for (split, _), record in zip(tasks, records):
            writers[split].write(record)
            if progress is not None:
                progress(1)
    return dict(counts)


_worker: dict = {}  # what `_demo_record` needs in this process (`_start_demo_worker`)


def _start_demo_worker(out: Path, config: ShardConfig, seed: int, test_videos: Optional[VideoForm]) -> None:
    # One torch thread: a codec's tokens can depend on the thread count (the tiny config's random EnCodec:
    # 15% of them between 1 and 2 threads), so the data is the same on every machine and worker count.
    torch.set_num_threads(1)
    _worker.update(out=out, seq=config.sequence, seed=seed, test_videos=test_videos, annotate=ClipAnnotator(config))


def _demo_record(task: tuple[str, int]) -> ClipRecord:
    """Clip `index` of `split`, synthesised and annotated (and its test video written)."""
    split, index = task
    out, seq, seed, test_videos = _worker["out"], _worker["seq"], _worker["seed"], _worker["test_videos"]
    clip = synthesize_clip(seed, split, index, seq)
    source = "synthetic"
    if test_videos is not None and split == "test":
        source = f"{TEST_VIDEOS_DIR}/{clip['id']}.mp4"
        (out / TEST_VIDEOS_DIR).mkdir(parents=True, exist_ok=True)
        frames = render_clip_frames(seed, split, index, seq.duration_s, test_videos.fps, test_videos.size)
        write_video(out / source, frames, test_videos.fps, clip["audio"], seq.sample_rate,
                    codec=test_videos.codec, options={"crf": str(test_videos.crf)})
    return _worker["annotate"](clip["id"], source, 0.0, clip["frames"], clip["audio"], clip["meta"], caption=clip["caption"])
