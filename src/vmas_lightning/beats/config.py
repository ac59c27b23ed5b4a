"""How beats are computed (`BeatConfig`, `data.beats`) and the onset and flow plugins it names,
built once per process (`build_plugin`)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from vmas_lightning.errors import VMASError
from vmas_lightning.registry import OnsetDetectorSpec, OpticalFlowSpec, PluginSpec, Registry


@dataclass
class BeatConfig:
    """How beats are computed (`data.beats`); the paper gives neither W nor the matching window.

    Every setting but `match_window` and `onset_match_window` decides what `vmas prepare` / `vmas
    demo-data` store, and the shards record them (`data.shards.annotation_settings`); those two act
    when the data is read.

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
        onset_match_window: the onset alignment score (`beats.onset_alignment`) reads the music's onset
            strength at most this many steps from each video beat (1 step = 20 ms: a cut on an onset
            lands within half a frame of it at 25 fps; at 5 steps dense music has an onset near every
            step, and the score stops telling the video's own music from the same music shifted by a
            beat: benchmarks/RESULTS.md, "Beats on real footage").
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

    onset_detector: OnsetDetectorSpec = "onset_peaks"
    optical_flow: OpticalFlowSpec = "farneback"
    peak_window: int = 25
    match_window: int = 5
    onset_match_window: int = 1
    min_flow: float = 0.1
    min_prominence: float = 0.5
    flow_fps: Optional[float] = 15.0

    # act when the data is read, not stored in shards
    READ_TIME: ClassVar[tuple[str, ...]] = ("match_window", "onset_match_window")

    def __post_init__(self):
        if self.peak_window < 1:
            raise VMASError(f"beats: peak_window must be >= 1 token step, got {self.peak_window}")
        for name in ("match_window", "onset_match_window"):
            if getattr(self, name) < 0:
                raise VMASError(f"beats: {name} must be >= 0 token steps, got {getattr(self, name)}")
        if not 0 <= self.min_prominence < 1:
            raise VMASError(f"beats: min_prominence must be in [0, 1), got {self.min_prominence}")
        if self.flow_fps is not None and not self.flow_fps > 0:
            raise VMASError(f"beats: flow_fps must be > 0 frames per second (or null: the video's own rate), got {self.flow_fps}")


_plugins: dict[tuple[str, str], Any] = {}


def build_plugin(registry: Registry, spec: PluginSpec) -> Any:
    """`registry.build(spec)`, built once per process and spec (madmom loads its networks once)."""
    key = (registry.kind, json.dumps(spec, sort_keys=True))
    if key not in _plugins:
        _plugins[key] = registry.build(spec)
    return _plugins[key]
