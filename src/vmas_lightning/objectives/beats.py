"""Music beats, video beats and their overlap at the token rate (SPEC section 5, Eq. 3-4).

Time convention: token step t stands for the audio interval [t / rate, (t + 1) / rate), so an event
at time x belongs to step floor(x * rate); a curve is sampled at the step centres (t + 0.5) / rate.
The magnitude of the flow between frames i and i + 1 is placed at time (i + 1) / fps, when the
changed frame appears (as MV-Align does).

    m_t = 1 where a music onset falls in step t
    v_t = 1 where the interpolated flow magnitude peaks in a window of W steps (see `video_beats`)
    o_t = m_t * [some v_s = 1 with |s - t| <= match_window]
    w_t = o_t + lambda
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import maximum_filter1d

from vmas_lightning.errors import VMASError
from vmas_lightning.registry import ONSET_DETECTORS, OPTICAL_FLOWS, PluginSpec, Registry
from vmas_lightning.sequence import SequenceConfig


@dataclass
class BeatConfig:
    """How beats and loss weights are computed; the paper gives neither W, the matching window nor lambda.

    Args:
        onset_detector: `ONSET_DETECTORS` plugin for music beats: onset_peaks (the strong peaks of the
            onset strength, 1-4 per second), beat_track (librosa's beat tracker), librosa (every
            onset, the paper's detector: so many that nearly every step near a video beat overlaps)
            or madmom.
        optical_flow: `OPTICAL_FLOWS` plugin for video beats (farneback or dis).
        peak_window: W, in token steps: a video beat is the maximum of the W steps centred on it
            (25 steps = 0.5 s, one beat per period of a 120 BPM tempo).
        match_window: a music beat is an overlap when a video beat lies within this many steps
            (5 steps = 0.1 s, about one video frame at 9.6 fps, MV-Align's matching tolerance).
        lam: lambda > 0, the weight of steps without overlap (w_t = o_t + lambda; 1.0: overlaps
            count twice).
        min_flow: smallest flow magnitude (pixels per frame) a video beat may have, so that a still
            or near-still clip has none (0.1 as MV-Align's peak threshold).
    """

    onset_detector: PluginSpec = "onset_peaks"
    optical_flow: PluginSpec = "farneback"
    peak_window: int = 25
    match_window: int = 5
    lam: float = 1.0
    min_flow: float = 0.1

    def __post_init__(self):
        if self.peak_window < 1:
            raise VMASError(f"beats: peak_window must be >= 1 token step, got {self.peak_window}")
        if self.match_window < 0:
            raise VMASError(f"beats: match_window must be >= 0 token steps, got {self.match_window}")
        if self.lam <= 0:
            raise VMASError(f"beats: lam must be > 0 (steps without overlap would get no loss), got {self.lam}")


def music_beats(onset_times: np.ndarray, num_tokens: int, token_rate: float) -> np.ndarray:
    """Onset times (s) `[M]` -> float32 `[T]`: 1 at step floor(time * rate), onsets outside the clip dropped."""
    steps = np.floor(np.asarray(onset_times, dtype=np.float64) * token_rate).astype(np.int64)
    beats = np.zeros(num_tokens, dtype=np.float32)
    beats[steps[(steps >= 0) & (steps < num_tokens)]] = 1.0
    return beats


def flow_curve(flow_magnitude: np.ndarray, fps: float, num_tokens: int, token_rate: float) -> np.ndarray:
    """Flow magnitude per frame pair `[F - 1]` -> float32 `[T]`, linearly interpolated at the step centres.

    Value i sits at (i + 1) / fps; before the first and after the last value the curve is held flat.
    """
    flow_magnitude = np.asarray(flow_magnitude, dtype=np.float64).reshape(-1)
    if flow_magnitude.size == 0:
        return np.zeros(num_tokens, dtype=np.float32)
    knots = (np.arange(flow_magnitude.size) + 1) / fps
    centres = (np.arange(num_tokens) + 0.5) / token_rate
    return np.interp(centres, knots, flow_magnitude).astype(np.float32)


def video_beats(
    flow_magnitude: np.ndarray,
    fps: float,
    num_tokens: int,
    token_rate: float,
    peak_window: int,
    min_flow: float = 0.0,
) -> np.ndarray:
    """Flow magnitude per frame pair `[F - 1]` -> float32 `[T]` 0/1 video beats.

    On the interpolated curve (`flow_curve`), a run of equal values (one step, or a plateau) is a beat
    when every step of it is the maximum of its window of `peak_window` steps (t +- W // 2, cut at the
    clip's ends) and its value is >= `min_flow`; the beat is put at the run's middle step (the later
    one for an even run). A run touching the first or last step is no beat: its peak may lie outside
    the clip, and a clip of constant motion (one run) or no motion has no beats.
    """
    curve = flow_curve(flow_magnitude, fps, num_tokens, token_rate)
    beats = np.zeros(num_tokens, dtype=np.float32)
    if num_tokens < 3:
        return beats
    half = peak_window // 2
    is_max = curve >= maximum_filter1d(curve, size=2 * half + 1, mode="nearest")
    starts = np.r_[0, np.flatnonzero(np.diff(curve)) + 1]
    ends = np.r_[starts[1:], num_tokens] - 1
    peaks = (
        np.logical_and.reduceat(is_max, starts)
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


def beat_weights(overlap: Any, lam: float) -> Any:
    """w_t = o_t + lambda, for a numpy array or a tensor of any shape (`[T]` or `[B, T]`)."""
    return overlap + lam


def beats_at_token_rate(
    onset_times: np.ndarray, flow_magnitude: np.ndarray, sequence: SequenceConfig, config: BeatConfig
) -> dict[str, np.ndarray]:
    """Onset times (s) and flow magnitudes (frames at `sequence.fps`) -> the float32 `[T]` vectors
    `music_beats`, `video_beats`, `overlap` and `weights` with T = `sequence.num_tokens`."""
    num_tokens, rate = sequence.num_tokens, sequence.token_rate
    music = music_beats(onset_times, num_tokens, rate)
    video = video_beats(flow_magnitude, sequence.fps, num_tokens, rate, config.peak_window, config.min_flow)
    overlaps = overlap(music, video, config.match_window)
    return {"music_beats": music, "video_beats": video, "overlap": overlaps, "weights": beat_weights(overlaps, config.lam)}


def compute_beats(
    wav: np.ndarray, sample_rate: int, frames: np.ndarray, sequence: SequenceConfig, config: BeatConfig
) -> dict[str, np.ndarray]:
    """One clip's beats: waveform `[N]` at `sample_rate` and frames uint8 `[F, H, W, 3]` at
    `sequence.fps` -> float32 `[T]` `music_beats`, `video_beats`, `overlap`, `weights`."""
    onsets = build_plugin(ONSET_DETECTORS, config.onset_detector)(np.asarray(wav, dtype=np.float32).reshape(-1), sample_rate)
    flow = build_plugin(OPTICAL_FLOWS, config.optical_flow)(frames)
    return beats_at_token_rate(onsets, flow, sequence, config)


_plugins: dict[tuple[str, str], Any] = {}


def build_plugin(registry: Registry, spec: PluginSpec) -> Any:
    """`registry.build(spec)`, built once per process and spec (madmom loads its networks once)."""
    key = (registry.kind, json.dumps(spec, sort_keys=True))
    if key not in _plugins:
        _plugins[key] = registry.build(spec)
    return _plugins[key]
