"""Music beats, video beats and their overlap at the token rate (SPEC section 5, Eq. 3-4).

Time convention: token step t stands for the audio interval [t / rate, (t + 1) / rate), so an event
at time x belongs to step floor(x * rate); a curve is sampled at the step centres (t + 0.5) / rate.
Video motion comes as a `FlowSeries` (`beats.flow_series`).

    m_t = 1 where a music onset falls in step t
    v_t = 1 where the interpolated flow magnitude peaks in a window of W steps (see `video_beats`)
    o_t = m_t * [some v_s = 1 with |s - t| <= match_window]
    w_t = o_t + lambda     (lambda: `model.loss.beat_lambda`, applied by the loss)
"""
from __future__ import annotations


import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d

from vmas_lightning.beats.plugins import build_plugin
from vmas_lightning.config import BeatConfig
from vmas_lightning.beats.flow_series import FlowSeries
from vmas_lightning.registry import ONSET_DETECTORS
from vmas_lightning.sequence import SequenceConfig


def music_beats(onset_times: np.ndarray, num_tokens: int, token_rate: float) -> np.ndarray:
    """Onset times (s) `[M]` -> float32 `[T]`: 1 at step floor(time * rate), onsets outside the clip dropped."""
    steps = np.floor(np.asarray(onset_times, dtype=np.float64) * token_rate).astype(np.int64)
    beats = np.zeros(num_tokens, dtype=np.float32)
    beats[steps[(steps >= 0) & (steps < num_tokens)]] = 1.0
    return beats


def step_times(beats: np.ndarray, token_rate: float) -> list[float]:
    """0/1 `[T]` -> start times (s) of the steps with a 1."""
    return [round(float(step) / token_rate, 3) for step in np.flatnonzero(beats)]


def beat_times(beats: dict[str, np.ndarray], token_rate: float) -> dict[str, list[float]]:
    """`compute_beats`'s 0/1 `[T]` arrays -> `music_beats`, `video_beats` and `overlaps` as step start
    times (s): what `vmas beats` reports and `plot_beats` draws."""
    return {"music_beats": step_times(beats["music_beats"], token_rate),
            "video_beats": step_times(beats["video_beats"], token_rate),
            "overlaps": step_times(beats["overlap"], token_rate)}


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
