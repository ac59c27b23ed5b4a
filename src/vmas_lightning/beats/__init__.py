"""Beat annotation (SPEC section 5): music beats from onset detectors (`onsets`, `ONSET_DETECTORS`),
video beats from optical flow (`optical_flow`, `OPTICAL_FLOWS`; `flow_series`: a clip's flow
magnitude over time), their overlap at the token rate (`annotate`), the settings (`config`) and
the shifted-music alignment scores (`alignment`). `data/` stores the beats in shards, the loss
weights its tokens by them (`losses.BeatWeightedCrossEntropy`), `metrics/` and `vmas beats` score them.

The plugin modules (`onsets`, `optical_flow`) are imported by the registry, not here.
"""
from vmas_lightning.beats.alignment import onset_alignment, onset_strength_curve, shift_alignment
from vmas_lightning.beats.annotate import (
    beats_at_token_rate,
    beat_times,
    compute_beats,
    flow_curve,
    music_beats,
    overlap,
    step_times,
    video_beats,
)
from vmas_lightning.beats.plugins import build_plugin
from vmas_lightning.config import BeatConfig
from vmas_lightning.beats.flow_series import FlowSeries, frames_flow, source_flow, video_flow

__all__ = [
    "BeatConfig",
    "FlowSeries",
    "beats_at_token_rate",
    "build_plugin",
    "beat_times",
    "compute_beats",
    "flow_curve",
    "frames_flow",
    "music_beats",
    "onset_alignment",
    "onset_strength_curve",
    "overlap",
    "shift_alignment",
    "source_flow",
    "step_times",
    "video_beats",
    "video_flow",
]
