"""Music beats, video beats and their overlap at the token rate (SPEC section 5, Eq. 3-4).

Time convention: token step t stands for the audio interval [t / rate, (t + 1) / rate), so an event
at time x belongs to step floor(x * rate); a curve is sampled at the step centres (t + 0.5) / rate.
The magnitude of the flow between two consecutive frames is placed at the time of the later one,
when the changed frame appears (as MV-Align does).

Flow is computed on consecutive *source* frames (`video_flow`; `source_flow` is also MV-Align's
path to a video file's frames), never on frames resampled to the
encoder's 9.6 fps: resampling 25 fps to 9.6 fps keeps frames 2 or 3 source frames apart in turn,
so a smooth camera motion gets a zig-zag magnitude whose every zig is a local maximum.

    m_t = 1 where a music onset falls in step t
    v_t = 1 where the interpolated flow magnitude peaks in a window of W steps (see `video_beats`)
    o_t = m_t * [some v_s = 1 with |s - t| <= match_window]
    w_t = o_t + lambda     (lambda: `model.loss.beat_lambda`, applied by the loss)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d

from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.registry import ONSET_DETECTORS, OPTICAL_FLOWS, PluginSpec, Registry
from vmas_lightning.sequence import SequenceConfig


@dataclass
class BeatConfig:
    """How beats are computed (`data.beats`); the paper gives neither W nor the matching window.

    Every setting but `match_window` decides what `vmas prepare` / `vmas demo-data` store, and the
    shards record them (`data.shards.annotation_settings`); `match_window` acts when the data is read.

    Args:
        onset_detector: `ONSET_DETECTORS` plugin for music beats: onset_peaks (the strong peaks of the
            onset strength, 1-4 per second), beat_track (librosa's beat tracker), librosa (every
            onset, the paper's detector: so many that nearly every step near a video beat overlaps)
            or madmom.
        optical_flow: `OPTICAL_FLOWS` plugin for video beats (farneback, dis or raft).
        peak_window: W, in token steps: a video beat is the maximum of the W steps centred on it
            (25 steps = 0.5 s, one beat per period of a 120 BPM tempo).
        match_window: a music beat is an overlap when a video beat lies within this many steps
            (5 steps = 0.1 s, about one video frame at 9.6 fps, MV-Align's matching tolerance).
        min_flow: smallest flow magnitude (pixels per frame pair at the flow's frame rate) a video
            beat may have, so that a still or near-still clip has none (0.1 as MV-Align's peak
            threshold).
        min_prominence: a video beat must rise above the flow on both sides of it within the window
            by this fraction of its own value (0.5: at least twice the higher of the minima before
            and after it), so the estimator's wobbles on a continuous pan or zoom are no beats; 0
            keeps every local maximum (the paper's definition; the paper gives no threshold).
        flow_fps: frame rate flow is computed at: the source rate divided by the smallest whole
            stride that reaches at most this (frames dropped evenly, never duplicated: 25 fps ->
            12.5, 30 and 60 fps -> 15 for 15.0); None, every pair of consecutive source frames. At
            60 fps a slow pan moves ~0.1 px per frame, below the codec's noise, and the
            magnitude zig-zags; at about 15 fps (close to the paper's 9.6) it is smooth.
    """

    onset_detector: PluginSpec = "onset_peaks"
    optical_flow: PluginSpec = "farneback"
    peak_window: int = 25
    match_window: int = 5
    min_flow: float = 0.1
    min_prominence: float = 0.5
    flow_fps: Optional[float] = 15.0

    READ_TIME: ClassVar[tuple[str, ...]] = ("match_window",)  # act when the data is read, not stored in shards

    def __post_init__(self):
        if self.peak_window < 1:
            raise VMASError(f"beats: peak_window must be >= 1 token step, got {self.peak_window}")
        if self.match_window < 0:
            raise VMASError(f"beats: match_window must be >= 0 token steps, got {self.match_window}")
        if not 0 <= self.min_prominence < 1:
            raise VMASError(f"beats: min_prominence must be in [0, 1), got {self.min_prominence}")
        if self.flow_fps is not None and not self.flow_fps > 0:
            raise VMASError(f"beats: flow_fps must be > 0 frames per second (or null: the video's own rate), got {self.flow_fps}")


@dataclass(frozen=True)
class FlowSeries:
    """Mean flow magnitude per pair of consecutive frames, `magnitude [P]` (pixels), at `times [P]`
    (s from the clip start: the later frame of each pair), computed on frames at `fps`; the clip
    lasts `duration_s`."""

    magnitude: np.ndarray
    times: np.ndarray
    fps: float
    duration_s: float

    @classmethod
    def uniform(cls, magnitude: np.ndarray, fps: float) -> "FlowSeries":
        """Flow of frames at a constant `fps` starting at 0 s: value i sits at (i + 1) / fps."""
        magnitude = np.asarray(magnitude, dtype=np.float32).reshape(-1)
        return cls(magnitude, (np.arange(magnitude.size) + 1) / fps, fps, (magnitude.size + 1) / fps)

    def window(self, start_s: float, duration_s: float) -> "FlowSeries":
        """The pairs whose later frame lies in (start_s, start_s + duration_s), times from start_s:
        the flow a clip cut there sees (not the jump into its first frame)."""
        keep = (self.times > start_s + 1e-6) & (self.times < start_s + duration_s - 1e-6)
        return FlowSeries(self.magnitude[keep], self.times[keep] - start_s, self.fps, duration_s)


def music_beats(onset_times: np.ndarray, num_tokens: int, token_rate: float) -> np.ndarray:
    """Onset times (s) `[M]` -> float32 `[T]`: 1 at step floor(time * rate), onsets outside the clip dropped."""
    steps = np.floor(np.asarray(onset_times, dtype=np.float64) * token_rate).astype(np.int64)
    beats = np.zeros(num_tokens, dtype=np.float32)
    beats[steps[(steps >= 0) & (steps < num_tokens)]] = 1.0
    return beats


def flow_curve(flow: FlowSeries, num_tokens: int, token_rate: float) -> np.ndarray:
    """`flow.magnitude [P]` -> float32 `[T]`, linearly interpolated in time at the step centres;
    before the first and after the last value the curve is held flat."""
    if flow.magnitude.size == 0:
        return np.zeros(num_tokens, dtype=np.float32)
    centres = (np.arange(num_tokens) + 0.5) / token_rate
    return np.interp(centres, flow.times, np.asarray(flow.magnitude, dtype=np.float64)).astype(np.float32)


def video_beats(
    flow: FlowSeries,
    num_tokens: int,
    token_rate: float,
    peak_window: int,
    min_flow: float = 0.0,
    min_prominence: float = 0.0,
) -> np.ndarray:
    """Flow magnitude per frame pair -> float32 `[T]` 0/1 video beats.

    On the interpolated curve (`flow_curve`), a run of equal values (one step, or a plateau) is a beat
    when every step of it is the maximum of its window of `peak_window` steps (t +- W // 2, cut at the
    clip's ends), its value v is >= `min_flow` and it rises by `min_prominence` * v above the higher
    of the curve's minima over the W // 2 steps before and the W // 2 steps after it (a cut's spike
    does; an estimator's wobble next to one low value does not);
    the beat is put at the run's middle step (the later one for an even run). A run touching the
    first or last step is no beat: its peak may lie outside the clip, and a clip of constant motion
    (one run) or no motion has no beats.
    """
    curve = flow_curve(flow, num_tokens, token_rate)
    beats = np.zeros(num_tokens, dtype=np.float32)
    if num_tokens < 3:
        return beats
    half = peak_window // 2
    is_max = curve >= maximum_filter1d(curve, size=2 * half + 1, mode="nearest")
    halves = sliding_window_view(np.pad(curve, half, mode="edge"), half + 1).min(axis=1)  # [T + half]
    base = np.maximum(halves[:num_tokens], halves[half:])  # the higher of the minima before and after t
    prominent = curve - base >= min_prominence * curve
    starts = np.r_[0, np.flatnonzero(np.diff(curve)) + 1]
    ends = np.r_[starts[1:], num_tokens] - 1
    peaks = (
        np.logical_and.reduceat(is_max & prominent, starts)
        & (curve[starts] >= min_flow)
        & (starts > 0)
        & (ends < num_tokens - 1)
    )
    beats[(starts[peaks] + ends[peaks] + 1) // 2] = 1.0
    return beats


def overlap(music: np.ndarray, video: np.ndarray, match_window: int) -> np.ndarray:
    """o_t = 1 iff m_t = 1 and some v_s = 1 with |s - t| <= match_window; float32 `[T]`."""
    video_near = maximum_filter1d(np.asarray(video, dtype=np.float32), size=2 * match_window + 1, mode="constant")
    return (np.asarray(music, dtype=np.float32) * video_near).astype(np.float32)


def shift_alignment(music: np.ndarray, video: np.ndarray, match_window: int) -> dict[str, Optional[float]]:
    """How much better music beats `[T]` meet video beats `[T]` than the same music circularly shifted.

    The statistic is the overlap share (music beats with a video beat within `match_window` steps,
    the window wrapping around the clip's ends). The null is that share for every circular shift s
    of the music whose distance from 0 is more than `match_window` steps (a smaller shift keeps
    the same overlaps). The music keeps its own rhythm and density in the null, so music with
    beats everywhere scores near 0 however the video moves, unlike the overlap share itself.

    Returns:
        `share`: the unshifted overlap share; `null_mean`, `null_std`: over the shifts; `z`:
        (share - null_mean) / null_std; `percentile`: % of shifts scoring below, ties counted half.
        All None without music or video beats; `z` None where every shift scores the same.
    """
    music, video = np.asarray(music).reshape(-1) > 0, np.asarray(video, dtype=np.float32).reshape(-1)
    num_tokens = music.size
    steps = np.flatnonzero(music)
    if steps.size == 0 or not video.any() or num_tokens <= 2 * match_window + 1:
        return {"share": None, "null_mean": None, "null_std": None, "z": None, "percentile": None}
    near = maximum_filter1d(video, size=2 * match_window + 1, mode="wrap")
    shifts = np.arange(num_tokens)
    shares = near[(steps[None, :] + shifts[:, None]) % num_tokens].mean(axis=1)  # [T]
    null = shares[np.minimum(shifts, num_tokens - shifts) > match_window]
    share, std = float(shares[0]), float(null.std())
    return {
        "share": share,
        "null_mean": float(null.mean()),
        "null_std": std,
        "z": (share - float(null.mean())) / std if std > 0 else None,
        "percentile": 100.0 * float(np.mean(null < share) + 0.5 * np.mean(null == share)),
    }


def beat_weights(overlap: Any, lam: float) -> Any:
    """w_t = o_t + lambda, for a numpy array or a tensor of any shape (`[T]` or `[B, T]`)."""
    return overlap + lam


def beats_at_token_rate(
    onset_times: np.ndarray, flow: FlowSeries, sequence: SequenceConfig, config: BeatConfig
) -> dict[str, np.ndarray]:
    """Onset times (s) and a clip's flow -> the float32 `[T]` vectors `music_beats`, `video_beats` and
    `overlap` with T = `sequence.num_tokens`."""
    num_tokens, rate = sequence.num_tokens, sequence.token_rate
    music = music_beats(onset_times, num_tokens, rate)
    video = video_beats(flow, num_tokens, rate, config.peak_window, config.min_flow, config.min_prominence)
    return {"music_beats": music, "video_beats": video, "overlap": overlap(music, video, config.match_window)}


def compute_beats(
    wav: np.ndarray, sample_rate: int, flow: FlowSeries, sequence: SequenceConfig, config: BeatConfig
) -> dict[str, np.ndarray]:
    """One clip's beats: waveform `[N]` at `sample_rate` and its flow (`video_flow`, `frames_flow`)
    -> float32 `[T]` `music_beats`, `video_beats`, `overlap`."""
    onsets = build_plugin(ONSET_DETECTORS, config.onset_detector)(np.asarray(wav, dtype=np.float32).reshape(-1), sample_rate)
    return beats_at_token_rate(onsets, flow, sequence, config)


def frames_flow(frames: np.ndarray, fps: float, config: BeatConfig) -> FlowSeries:
    """Flow of frames uint8 `[F, H, W, 3]` rendered at `fps` (synthetic clips; a video file goes
    through `video_flow`, which never sees duplicated frames)."""
    return FlowSeries.uniform(build_plugin(OPTICAL_FLOWS, config.optical_flow)(frames), fps)


FLOW_CHUNK = 64  # frames per call of the flow plugin: bounded memory on long videos, batches for `raft`
FLOW_CHUNK_BYTES = 256 * 2**20  # ... and at most this much frame data (native-size frames for MV-Align)


def source_flow(
    path: str | Path,
    flow: Callable[[np.ndarray], np.ndarray],
    size: Optional[int] = None,
    max_fps: Optional[float] = None,
    start_s: float = 0.0,
    duration_s: Optional[float] = None,
) -> FlowSeries:
    """Flow of a video file's consecutive source frames (`video_io.iter_frames`: every frame, or every
    k-th for `max_fps`; never resampled) shown in [start_s, start_s + duration_s) (the whole video
    for None), resized and center-cropped to `size` (None: the native size), by the optical-flow
    callable `flow` run on chunks of at most `FLOW_CHUNK` frames and `FLOW_CHUNK_BYTES`. Times are
    from `start_s`; magnitudes keep the flow's dtype. The one flow path of video beats (`video_flow`)
    and MV-Align (`metrics.mv_align.source_peaks`). Raises `InputFileError` for fewer than 2 frames."""
    from vmas_lightning.data.video_io import iter_frames

    end_s = None if duration_s is None else start_s + duration_s
    fps, frames = iter_frames(path, size=size, max_fps=max_fps, start_s=start_s, end_s=end_s)
    magnitudes, times, chunk, chunk_times = [], [], [], []
    for time, frame in frames:
        chunk.append(frame)
        chunk_times.append(time - start_s)
        if len(chunk) > min(FLOW_CHUNK, max(1, FLOW_CHUNK_BYTES // frame.nbytes)):
            magnitudes.append(flow(np.stack(chunk)))
            times.append(chunk_times[1:])
            chunk, chunk_times = chunk[-1:], chunk_times[-1:]
    if len(chunk) > 1:
        magnitudes.append(flow(np.stack(chunk)))
        times.append(chunk_times[1:])
    if not magnitudes:
        span = "" if duration_s is None else f" in {start_s:g}-{end_s:g} s"
        raise InputFileError(path, f"needs at least 2 video frames{span} for optical flow, got {len(chunk)}")
    last = chunk_times[-1]
    duration = duration_s if duration_s is not None else last + 1.0 / fps
    return FlowSeries(np.concatenate(magnitudes), np.concatenate(times), fps, duration)


def video_flow(path: str | Path, config: BeatConfig, size: int) -> FlowSeries:
    """Flow of a whole video file as video beats use it (`source_flow`): `config.optical_flow` on the
    source frames at most `config.flow_fps`, resized and center-cropped to `size`."""
    return source_flow(path, build_plugin(OPTICAL_FLOWS, config.optical_flow), size, config.flow_fps)


_plugins: dict[tuple[str, str], Any] = {}


def build_plugin(registry: Registry, spec: PluginSpec) -> Any:
    """`registry.build(spec)`, built once per process and spec (madmom loads its networks once)."""
    key = (registry.kind, json.dumps(spec, sort_keys=True))
    if key not in _plugins:
        _plugins[key] = registry.build(spec)
    return _plugins[key]
