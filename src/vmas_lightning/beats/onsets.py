"""Music beats: onset detectors (`ONSET_DETECTORS`), `(wav [N], sample_rate) -> onset times [M]` in seconds.

`librosa` (every onset librosa finds: ~5-8 per second in dense music, the paper's and MV-Align's
detector), `onset_peaks` (the strong peaks of the same onset strength, at most one per
`min_interval_s`: 1-4 per second, the default music beats) and `beat_track` (librosa's
dynamic-programming beat tracker: one beat per tempo period).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from vmas_lightning.errors import VMASError
from vmas_lightning.registry import ONSET_DETECTORS

MADMOM_SAMPLE_RATE = 44100


class _OnsetDetector(ABC):
    """`(wav [N], sample_rate) -> onset times [M]` (s, float64); an empty or silent waveform has none."""

    def __call__(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if not np.any(wav):
            return np.zeros(0, dtype=np.float64)
        return self.detect(wav, sample_rate)

    @abstractmethod
    def detect(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """float32 `wav [N]`, not silent -> onset times `[M]` in seconds."""


@ONSET_DETECTORS.register("librosa")
class LibrosaOnsets(_OnsetDetector):
    """Spectral-flux onsets (Bello et al. 2005): `librosa.onset.onset_strength` (log-mel flux) and
    `librosa.onset.onset_detect` peak picking with librosa's defaults, as the MV-Align metric uses.

    Args:
        hop_length: analysis hop in samples (librosa's default 512 = 16 ms at 32 kHz, finer than a
            20 ms token step).
        backtrack: move each onset back to the preceding energy minimum.
    """

    def __init__(self, hop_length: int = 512, backtrack: bool = False):
        self.hop_length = hop_length
        self.backtrack = backtrack

    def detect(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        import librosa

        return librosa.onset.onset_detect(
            y=wav, sr=sample_rate, hop_length=self.hop_length, backtrack=self.backtrack, units="time"
        )


def _positive(name: str, value: float, what: str, allow_zero: bool = False) -> float:
    """`value` as a float, or a one-line error naming the option of `what`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 if allow_zero else value > 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise VMASError(f"onset detector '{what}': {name} must be a number {bound}, got {value!r}")
    return float(value)


def _hop_length(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VMASError(f"onset detector '{what}': hop_length must be an integer >= 1, got {value!r}")
    return value


@ONSET_DETECTORS.register("onset_peaks")
class OnsetPeaks(_OnsetDetector):
    """Music beats as the strong peaks of librosa's onset strength (log-mel spectral flux), not every onset.

    The onset strength (hop `hop_length`) is scaled to [0, 1] over the clip; frame t is a beat when its
    strength is the maximum within +- `window_s`, exceeds the mean within +- `average_s` by `delta`,
    and comes at least `min_interval_s` after the previous beat (`librosa.util.peak_pick`). So a
    clip has at most 1 / `min_interval_s` beats per second and soft onsets (hi-hats over a loud
    mix) are skipped. None of these is in the paper (it names no detector settings).

    Args:
        hop_length: analysis hop in samples (512 = 16 ms at 32 kHz).
        window_s: half-width of the local-maximum window (s).
        average_s: half-width of the moving-average window the threshold is relative to (s).
        delta: how far above the local average a beat's scaled strength must be.
        min_interval_s: smallest gap between beats (s; 0.25 s: at most 4 beats per second).
    """

    def __init__(self, hop_length: int = 512, window_s: float = 0.1, average_s: float = 0.5, delta: float = 0.2,
                 min_interval_s: float = 0.25):
        self.hop_length = _hop_length(hop_length, "onset_peaks")
        self.window_s = _positive("window_s", window_s, "onset_peaks")
        self.average_s = _positive("average_s", average_s, "onset_peaks")
        self.delta = _positive("delta", delta, "onset_peaks", allow_zero=True)
        self.min_interval_s = _positive("min_interval_s", min_interval_s, "onset_peaks", allow_zero=True)

    def detect(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        import librosa

        strength = librosa.onset.onset_strength(y=wav, sr=sample_rate, hop_length=self.hop_length)
        strength = strength - strength.min()
        if strength.max() <= 0:
            return np.zeros(0, dtype=np.float64)
        strength /= strength.max()
        frames_per_s = sample_rate / self.hop_length
        window, average = max(1, round(self.window_s * frames_per_s)), max(1, round(self.average_s * frames_per_s))
        peaks = librosa.util.peak_pick(strength, pre_max=window, post_max=window + 1, pre_avg=average,
                                       post_avg=average + 1, delta=self.delta,
                                       wait=round(self.min_interval_s * frames_per_s))
        return librosa.frames_to_time(peaks, sr=sample_rate, hop_length=self.hop_length).astype(np.float64)


@ONSET_DETECTORS.register("beat_track")
class BeatTrack(_OnsetDetector):
    """Music beats from librosa's beat tracker (`librosa.beat.beat_track`, Ellis 2007): one beat per
    estimated tempo period, placed on onset-strength peaks (also where a beat has no onset).

    Args:
        hop_length: analysis hop in samples.
        start_bpm: the tempo prior (librosa's default 120).
        tightness: how strictly beats follow the tempo (librosa's default 100).
    """

    def __init__(self, hop_length: int = 512, start_bpm: float = 120.0, tightness: float = 100.0):
        self.hop_length = _hop_length(hop_length, "beat_track")
        self.start_bpm = _positive("start_bpm", start_bpm, "beat_track")
        self.tightness = _positive("tightness", tightness, "beat_track")

    def detect(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        import librosa

        _, beats = librosa.beat.beat_track(y=wav, sr=sample_rate, hop_length=self.hop_length,
                                           start_bpm=self.start_bpm, tightness=self.tightness, units="time")
        return np.asarray(beats, dtype=np.float64)


@ONSET_DETECTORS.register("madmom")
class MadmomOnsets(_OnsetDetector):
    """madmom's RNN onset detector (`RNNOnsetProcessor` + `OnsetPeakPickingProcessor`, 100 frames/s),
    run on the waveform resampled to 44.1 kHz (the rate its networks were trained at).

    Optional: `pip install vmas-lightning[madmom]`. madmom 0.16.1 (the latest release) does not
    import on Python >= 3.10; install madmom from its git main branch there.

    Args:
        threshold: peak-picking threshold on the onset activation (madmom's default 0.5).
        combine: onsets closer than this many seconds are merged (madmom's default 0.03).
    """

    def __init__(self, threshold: float = 0.5, combine: float = 0.03):
        try:
            from madmom.features.onsets import OnsetPeakPickingProcessor, RNNOnsetProcessor
        except Exception as exc:  # ImportError, or madmom 0.16's own failure on Python >= 3.10
            raise VMASError(
                f"onset detector 'madmom' needs madmom ({type(exc).__name__}: {exc}); "
                "pip install vmas-lightning[madmom] (madmom 0.16 fails on Python 3.11: "
                "pip install git+https://github.com/CPJKU/madmom) or use onset_detector: librosa"
            ) from exc
        self.activation = RNNOnsetProcessor()
        self.peaks = OnsetPeakPickingProcessor(threshold=threshold, combine=combine, fps=100)

    def detect(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        from madmom.audio.signal import Signal
        from scipy.signal import resample_poly

        wav = resample_poly(wav, MADMOM_SAMPLE_RATE, sample_rate).astype(np.float32)
        activation = self.activation(Signal(wav, sample_rate=MADMOM_SAMPLE_RATE))
        return np.asarray(self.peaks(activation), dtype=np.float64)
