"""Beat alignment against shifted music: `vmas beats`'s two alignment scores (`beats.shift_alignment`,
`beats.onset_alignment`) in `vmas test`.

Per clip, the music beats of the audio (`data.beats.onset_detector`, the detector of the training
beats) are put on the token grid and compared with the clip's stored video beats (the beats the
training loss up-weights): the overlap share against a null of the same music circularly shifted,
as a z-score and a percentile. Unlike MV-Align it does not reward music that has onsets
everywhere: the null keeps the music's own density and rhythm, so only timing counts. The second
score reads the music's onset strength at the video beats (within `data.beats.onset_match_window`)
against the same null, with no music-beat detector. The suite reports the means over the clips
where each is defined (`alignment_z`, `alignment_percentile`, `onset_alignment_z`,
`onset_alignment_percentile`).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vmas_lightning.beats import (
    BeatConfig, build_plugin, music_beats, onset_alignment, onset_strength_curve, shift_alignment,
)
from vmas_lightning.metrics.audio import mono_at
from vmas_lightning.registry import ONSET_DETECTORS

KEYS = ("alignment_z", "alignment_percentile", "onset_alignment_z", "onset_alignment_percentile")


class BeatAlignment(Metric):
    """Mean shift-null alignment z-scores and percentiles of music beats and of onset strength with video beats.

    Args:
        beats: the beat settings (`onset_detector`, `match_window`, `onset_match_window`); `vmas test`
            passes `data.beats`.
        token_rate: steps per second of the video beats' grid (`model.sequence.token_rate`).
    """

    full_state_update = False

    def __init__(self, beats: Optional[BeatConfig] = None, token_rate: float = 50.0, **kwargs):
        super().__init__(**kwargs)
        self.beats = beats or BeatConfig()
        self.token_rate = token_rate
        for key in KEYS:  # NaN where a clip has no music beats, no video beats or silent audio (or a constant null)
            self.add_state(key, default=[], dist_reduce_fx="cat")

    @torch.no_grad()
    def update(self, wav: torch.Tensor, sample_rate: int, video_beats: torch.Tensor) -> None:
        """`wav [B, C, N]` or `[B, N]` at `sample_rate`; `video_beats` 0/1 `[B, T]` on the token grid."""
        if wav.shape[0] != video_beats.shape[0]:
            raise ValueError(f"{wav.shape[0]} waveforms for {video_beats.shape[0]} video beat tracks")
        detector = build_plugin(ONSET_DETECTORS, self.beats.onset_detector)
        found = []
        for audio, video in zip(mono_at(wav, sample_rate, sample_rate).cpu().numpy(), video_beats.cpu().numpy()):
            music = music_beats(detector(audio, sample_rate), video.shape[-1], self.token_rate)
            strength = onset_strength_curve(audio, sample_rate, video.shape[-1], self.token_rate)
            found.append({"alignment": shift_alignment(music, video, self.beats.match_window),
                          "onset_alignment": onset_alignment(strength, video, self.beats.onset_match_window)})
        for key in KEYS:
            score, name = key.rsplit("_", 1)
            values = [math.nan if clip[score][name] is None else clip[score][name] for clip in found]
            getattr(self, key).append(torch.tensor(values, dtype=torch.float64, device=self.device))

    def per_clip(self) -> dict[str, Any]:
        """Each of `KEYS` `[B]` for the clips of the last `update` (NaN: undefined)."""
        return {key: getattr(self, key)[-1] for key in KEYS}

    def compute(self) -> dict[str, Any]:
        """Means over the clips with a defined value (NaN when none has one)."""
        return {key: dim_zero_cat(getattr(self, key)).nanmean() for key in KEYS}
