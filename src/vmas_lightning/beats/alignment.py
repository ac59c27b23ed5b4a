"""Beat alignment against shifted music: how much better the music meets the video beats than chance.

Two scores, each against the same null (the music circularly shifted by more than the matching
window, so it keeps its own rhythm and density and only timing counts):
- `shift_alignment`: the share of music beats (the detector's, the beats the loss up-weights) with
  a video beat near them;
- `onset_alignment`: the music's onset strength at the video beats, which needs no music-beat
  detector: a cut on a weak onset counts by that onset's strength.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy.ndimage import maximum_filter1d

UNDEFINED = {"null_mean": None, "null_std": None, "z": None, "percentile": None}


def _against_shifts(near: np.ndarray, steps: np.ndarray, match_window: int) -> dict[str, Optional[float]]:
    """The mean of `near [T]` at `steps [M]` (`value`), against its mean at the steps circularly shifted
    by every s whose distance from 0 is more than `match_window` (the shifts within the window would
    read the same beats; the null keeps those a little farther, so it errs high): `null_mean`,
    `null_std`, `z` (None where every shift scores the same) and `percentile` (% of shifts scoring
    below, ties counted half)."""
    num_tokens = near.size
    shifts = np.arange(num_tokens)
    values = near[(steps[None, :] + shifts[:, None]) % num_tokens].mean(axis=1)  # [T]
    null = values[np.minimum(shifts, num_tokens - shifts) > match_window]
    value, std = float(values[0]), float(null.std())
    return {
        "value": value,
        "null_mean": float(null.mean()),
        "null_std": std,
        "z": (value - float(null.mean())) / std if std > 0 else None,
        "percentile": 100.0 * float(np.mean(null < value) + 0.5 * np.mean(null == value)),
    }


def shift_alignment(music: np.ndarray, video: np.ndarray, match_window: int) -> dict[str, Optional[float]]:
    """How much better music beats `[T]` meet video beats `[T]` than the same music circularly shifted.

    The statistic is the overlap share (music beats with a video beat within `match_window` steps,
    the window wrapping around the clip's ends). The music keeps its own rhythm and density in the
    null, so music with beats everywhere scores near 0 however the video moves, unlike the overlap
    share itself.

    Returns:
        `share`: the unshifted overlap share; `null_mean`, `null_std`, `z`, `percentile`: see
        `_against_shifts`. All None without music or video beats.
    """
    music, video = np.asarray(music).reshape(-1) > 0, np.asarray(video, dtype=np.float32).reshape(-1)
    steps = np.flatnonzero(music)
    if steps.size == 0 or not video.any() or music.size <= 2 * match_window + 1:
        return {"share": None, **UNDEFINED}
    found = _against_shifts(maximum_filter1d(video, size=2 * match_window + 1, mode="wrap"), steps, match_window)
    return {"share": found.pop("value"), **found}


def onset_alignment(strength: np.ndarray, video: np.ndarray, match_window: int) -> dict[str, Optional[float]]:
    """How much stronger the music's onsets are at the video beats `[T]` than in the same music
    circularly shifted: the onset strength `[T]` (`onset_strength_curve`), its maximum within
    `match_window` steps of each video beat, averaged over the video beats.

    Returns:
        `strength`: that mean for the unshifted music, as a multiple of the windowed maximum's mean
        over all steps (1: no better than beats at random steps); `null_mean`, `null_std` (the same
        unit), `z`, `percentile`: see `_against_shifts`. All None without video beats or with a
        silent curve.
    """
    strength, video = np.asarray(strength, dtype=np.float64).reshape(-1), np.asarray(video).reshape(-1) > 0
    steps = np.flatnonzero(video)
    if steps.size == 0 or not strength.any() or strength.size <= 2 * match_window + 1:
        return {"strength": None, **UNDEFINED}
    near = maximum_filter1d(strength, size=2 * match_window + 1, mode="wrap")
    found = _against_shifts(near / near.mean(), steps, match_window)
    return {"strength": found.pop("value"), **found}


def onset_strength_curve(wav: np.ndarray, sample_rate: int, num_tokens: int, token_rate: float) -> np.ndarray:
    """Mono `wav [N]` -> float32 `[T]`: librosa's onset strength (log-mel spectral flux, the curve
    the onset detectors pick peaks from) at the start of each token step, linearly interpolated from
    its own frames (hop: one token step, rounded to whole samples); 0 beyond the audio."""
    import librosa

    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    hop = max(1, round(sample_rate / token_rate))
    if wav.size == 0 or not np.any(wav):
        return np.zeros(num_tokens, dtype=np.float32)
    strength = librosa.onset.onset_strength(y=wav, sr=sample_rate, hop_length=hop)
    frame_times = np.arange(strength.size) * hop / sample_rate
    return np.interp(np.arange(num_tokens) / token_rate, frame_times, strength, right=0.0).astype(np.float32)
