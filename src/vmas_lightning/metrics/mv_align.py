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

Onsets reuse `objectives.onsets.LibrosaOnsets` with its settings pinned to librosa's defaults
(hop 512, no backtracking), which is exactly the protocol. The flow keeps its own few lines
instead of `objectives.flow.FarnebackFlow`: that plugin returns float32 means of
`np.linalg.norm`, the protocol keeps `cv2.cartToPolar` + `cv2.mean` in float64, and peaks are
strict comparisons between neighbours, where float32 rounding can turn a peak into a tie.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import librosa
import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vmas_lightning.objectives.onsets import LibrosaOnsets

AUDIO_RATE = 22050
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)  # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
PEAK_THRESHOLD = 0.1


def audio_onsets(wav: np.ndarray) -> np.ndarray:
    """Onset times (s) of a mono 22,050-Hz waveform `[N]`: librosa onset_strength + onset_detect, defaults."""
    return LibrosaOnsets(hop_length=512, backtrack=False)(wav, AUDIO_RATE)


def flow_trajectory(frames: np.ndarray) -> np.ndarray:
    """Mean Farneback flow magnitude per frame `[F]` of RGB uint8 frames `[F, H, W, 3]`."""
    gray = [cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) for frame in frames]
    magnitudes = []
    for previous, current in zip(gray[:-1], gray[1:]):
        flow = cv2.calcOpticalFlowFarneback(previous, current, None, *FARNEBACK)
        magnitude, _ = cv2.cartToPolar(flow[..., 0], flow[..., 1])
        magnitudes.append(cv2.mean(magnitude)[0])
    return np.array(magnitudes[:1] + magnitudes, dtype=np.float64)


def video_peaks(trajectory: np.ndarray, fps: float) -> list[float]:
    """Times (s) of the strict local maxima of the flow trajectory that are >= 0.1."""
    return [
        i / fps
        for i in range(1, len(trajectory) - 1)
        if trajectory[i - 1] < trajectory[i] > trajectory[i + 1] and trajectory[i] >= PEAK_THRESHOLD
    ]


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


def mv_align_score(frames: np.ndarray, fps: float, wav: np.ndarray, sample_rate: int) -> float:
    """AV-Align of RGB uint8 frames `[F, H, W, 3]` at `fps` with a mono waveform `[N]` at `sample_rate`."""
    wav = np.asarray(wav, dtype=np.float32)
    if sample_rate != AUDIO_RATE:
        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=AUDIO_RATE)  # librosa.load's resampler
    return intersection_over_union(audio_onsets(wav), video_peaks(flow_trajectory(np.asarray(frames)), fps), fps)


def mv_align(video_path: str | Path, audio_path: Optional[str | Path] = None) -> float:
    """MV-Align of a video file with `audio_path` (default: the video's own soundtrack).

    Frames are read at the video's native rate and size; the audio at 22,050 Hz mono.
    """
    from vmas_lightning.data.video_io import read_audio, read_video

    clip = read_video(video_path)
    wav = read_audio(audio_path if audio_path is not None else video_path, AUDIO_RATE)
    return mv_align_score(clip.frames, clip.fps, wav, AUDIO_RATE)


class MVAlign(Metric):
    """Mean MV-Align over clips given as decoded frames and waveforms.

    For the paper's protocol pass the frames at the source video's native rate and size (the
    0.1 peak threshold is in pixels); frames resampled for the model give a different number.
    """

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def update(self, frames: torch.Tensor, fps: float, wav: torch.Tensor, sample_rate: int) -> None:
        """`frames`: uint8 `[B, F, H, W, 3]` at `fps`; `wav`: `[B, C, N]` or `[B, N]` at `sample_rate`."""
        if wav.dim() == 3:
            wav = wav.mean(dim=1)
        if frames.shape[0] != wav.shape[0]:
            raise ValueError(f"{frames.shape[0]} videos for {wav.shape[0]} waveforms")
        scores = [
            mv_align_score(video.cpu().numpy(), float(fps), audio.float().cpu().numpy(), int(sample_rate))
            for video, audio in zip(frames, wav)
        ]
        self.scores.append(torch.tensor(scores, dtype=torch.float64, device=self.device))

    def per_clip(self) -> dict[str, torch.Tensor]:
        """Scores `[B]` of the clips of the last `update`."""
        return {"mv_align": self.scores[-1]}

    def compute(self) -> torch.Tensor:
        return dim_zero_cat(self.scores).mean()
