"""Music beats: onset detectors (`ONSET_DETECTORS`), `(wav [N], sample_rate) -> onset times [M]` in seconds."""
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
