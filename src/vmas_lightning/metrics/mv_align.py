"""MV-Align: the AV-Align score (Yariv et al., AAAI 2024) between a video's motion peaks and its music's onsets.

Protocol (reference code, 2025 revision; SPEC section 7):
- audio: mono at librosa's default 22,050 Hz; onsets = `librosa.onset.onset_detect` on
  `librosa.onset.onset_strength` with librosa's defaults, in seconds;
- video: frames at the video's native rate, grayscale, Farneback flow between consecutive frames
  with (pyr_scale 0.5, levels 3, winsize 15, iterations 3, poly_n 5, poly_sigma 1.2, flags 0),
  mean flow magnitude per pair, the first value repeated for frame 0;
- video peaks: frames i in 1..F-2 whose magnitude is a strict local maximum and >= 0.1, at i / fps;
- matching: each onset a, in order, takes the first unused peak v with v - 1/fps < a < v + 1/fps;
- score: IoU = matches / (|onsets| + |peaks| - matches), averaged over videos.

The reference code divides by zero when a clip has neither onsets nor peaks; we define that score
as 0.0 (a clip with no detectable events earns no alignment credit, as torchmetrics' IoU does with
`zero_division=0`), so silence over a still video cannot raise the mean.

Onsets reuse `beats.onsets.LibrosaOnsets` with its settings pinned to librosa's defaults
(hop 512, no backtracking), which is exactly the protocol. The flow is the `farneback` plugin
(`beats.optical_flow.FarnebackFlow`, float64 means of `cv2.cartToPolar` magnitudes as the protocol
computes them) with the protocol's parameters, and a video file's frames are read by
`beats.flow_series.source_flow`: the one flow path of video beats and MV-Align, here at the native
rate and size.

Where the clip's frames come from is recorded with its peaks (`VideoPeaks.protocol`):
`source_native_rate` (the source video's frames at their native rate and size: the protocol) or
`model_rate_frames` (frames resampled and resized for the model: a different, approximate number).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import librosa
import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vmas_lightning.beats import source_flow
from vmas_lightning.beats.onsets import LibrosaOnsets
from vmas_lightning.beats.optical_flow import FarnebackFlow

AUDIO_RATE = 22050
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)  # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
PEAK_THRESHOLD = 0.1
SOURCE_NATIVE_RATE, MODEL_RATE_FRAMES, MIXED = "source_native_rate", "model_rate_frames", "mixed"


@dataclass(frozen=True)
class VideoPeaks:
    """The video side of MV-Align for one clip: motion-peak `times` (s from the clip's first frame),
    the `fps` of the frames they come from (one frame period is the matching tolerance) and the
    `protocol` those frames follow (`SOURCE_NATIVE_RATE` or `MODEL_RATE_FRAMES`)."""

    times: tuple[float, ...]
    fps: float
    protocol: str


def audio_onsets(wav: np.ndarray) -> np.ndarray:
    """Onset times (s) of a mono 22,050-Hz waveform `[N]`: librosa onset_strength + onset_detect, defaults."""
    return LibrosaOnsets(hop_length=512, backtrack=False)(wav, AUDIO_RATE)


def trajectory(magnitudes: np.ndarray) -> np.ndarray:
    """Mean flow magnitude per pair `[F - 1]` -> per frame `[F]`: the first pair's value repeated for frame 0."""
    return np.concatenate([magnitudes[:1], magnitudes])


def flow_trajectory(frames: np.ndarray) -> np.ndarray:
    """Mean Farneback flow magnitude per frame `[F]` (float64) of RGB uint8 frames `[F, H, W, 3]`."""
    return trajectory(FarnebackFlow(*FARNEBACK)(np.ascontiguousarray(frames)))


def video_peaks(trajectory: np.ndarray, fps: float) -> list[float]:
    """Times (s) of the strict local maxima of the flow trajectory that are >= 0.1."""
    return [
        i / fps
        for i in range(1, len(trajectory) - 1)
        if trajectory[i - 1] < trajectory[i] > trajectory[i + 1] and trajectory[i] >= PEAK_THRESHOLD
    ]


def frames_peaks(frames: np.ndarray, fps: float, protocol: str = MODEL_RATE_FRAMES) -> VideoPeaks:
    """`VideoPeaks` of decoded RGB uint8 frames `[F, H, W, 3]` at `fps` (by default labelled as
    frames resampled for the model)."""
    return VideoPeaks(tuple(video_peaks(flow_trajectory(frames), fps)), float(fps), protocol)


def source_peaks(path: str | Path, start_s: float = 0.0, duration_s: Optional[float] = None) -> VideoPeaks:
    """`VideoPeaks` of a video file by the protocol: every frame at the native rate and size that is
    shown in [start_s, start_s + duration_s) (the whole file for None), peak i at i / fps from the
    first of them, as if the clip had been cut to a file of its own. Raises `InputFileError` for a
    file that cannot be read or fewer than 2 frames."""
    flow = source_flow(path, FarnebackFlow(*FARNEBACK), start_s=start_s, duration_s=duration_s)
    return VideoPeaks(tuple(video_peaks(trajectory(flow.magnitude), flow.fps)), flow.fps, SOURCE_NATIVE_RATE)


def intersection_over_union(onsets, peaks, fps: float) -> float:
    """Greedy one-to-one matching within one frame period; 0.0 when both sets are empty."""
    used = [False] * len(peaks)
    matches = 0
    for onset in onsets:
        for j, peak in enumerate(peaks):
            if not used[j] and peak - 1 / fps < onset < peak + 1 / fps:
                used[j] = True
                matches += 1
                break
    union = len(onsets) + len(peaks) - matches
    return matches / union if union else 0.0


def align_score(video: VideoPeaks, wav: np.ndarray, sample_rate: int) -> float:
    """AV-Align of a clip's `VideoPeaks` with a mono waveform `[N]` at `sample_rate`."""
    wav = np.asarray(wav, dtype=np.float32)
    if sample_rate != AUDIO_RATE:
        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=AUDIO_RATE)  # librosa.load's resampler
    return intersection_over_union(audio_onsets(wav), video.times, video.fps)


def mv_align_score(frames: np.ndarray, fps: float, wav: np.ndarray, sample_rate: int) -> float:
    """AV-Align of RGB uint8 frames `[F, H, W, 3]` at `fps` with a mono waveform `[N]` at `sample_rate`."""
    return align_score(frames_peaks(frames, fps), wav, sample_rate)


def mv_align(video_path: str | Path, audio_path: Optional[str | Path] = None) -> float:
    """MV-Align of a video file with `audio_path` (default: the video's own soundtrack), by the
    protocol: frames at the video's native rate and size (`source_peaks`), audio at 22,050 Hz mono."""
    from vmas_lightning.video_io import read_audio

    wav = read_audio(audio_path if audio_path is not None else video_path, AUDIO_RATE)
    return align_score(source_peaks(video_path), wav, AUDIO_RATE)


def protocol_of(protocols: Sequence[str]) -> Optional[str]:
    """The one protocol of a set of clips, `MIXED` when they differ, None for no clip."""
    found = set(protocols)
    return None if not found else found.pop() if len(found) == 1 else MIXED


class MVAlign(Metric):
    """Mean MV-Align over clips given as their `VideoPeaks` and waveforms; `compute` also says which
    protocol the clips' frames followed (`mv_align_protocol`: `source_native_rate`,
    `model_rate_frames` or `mixed`). Only `source_native_rate` is the paper's number: the 0.1 peak
    threshold is in pixels and the matching tolerance one frame period."""

    full_state_update = False
    PROTOCOLS = (SOURCE_NATIVE_RATE, MODEL_RATE_FRAMES)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("protocols", default=[], dist_reduce_fx="cat")  # index into PROTOCOLS per clip

    def update(self, videos: Sequence[VideoPeaks], wav: torch.Tensor, sample_rate: int) -> None:
        """`videos`: B clips' `VideoPeaks`; `wav`: `[B, C, N]` or `[B, N]` at `sample_rate`."""
        if wav.dim() == 3:
            wav = wav.mean(dim=1)
        if len(videos) != wav.shape[0]:
            raise ValueError(f"{len(videos)} videos for {wav.shape[0]} waveforms")
        unknown = {video.protocol for video in videos} - set(self.PROTOCOLS)
        if unknown:
            raise ValueError(f"unknown MV-Align protocol {sorted(unknown)}; known: {', '.join(self.PROTOCOLS)}")
        scores = [align_score(video, audio.float().cpu().numpy(), int(sample_rate)) for video, audio in zip(videos, wav)]
        self.scores.append(torch.tensor(scores, dtype=torch.float64, device=self.device))
        self.protocols.append(torch.tensor([self.PROTOCOLS.index(v.protocol) for v in videos], device=self.device))

    def per_clip(self) -> dict[str, Any]:
        """Scores `[B]` and protocols of the clips of the last `update`."""
        return {"mv_align": self.scores[-1], "mv_align_protocol": [self.PROTOCOLS[i] for i in self.protocols[-1].tolist()]}

    def compute(self) -> dict[str, Any]:
        """`mv_align`: the mean over clips; `mv_align_protocol`: their protocol (`protocol_of`)."""
        protocols = dim_zero_cat(self.protocols).tolist()
        return {"mv_align": dim_zero_cat(self.scores).mean(),
                "mv_align_protocol": protocol_of([self.PROTOCOLS[i] for i in protocols])}
