"""Video beats: optical-flow plugins (`OPTICAL_FLOWS`), `(frames uint8 [F, H, W, 3]) -> mean flow magnitude [F - 1]`.

Value i is the mean per-pixel flow magnitude (pixels) between frames i and i + 1, computed on
grayscale frames with OpenCV.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np

from vmas_lightning.errors import VMASError
from vmas_lightning.registry import OPTICAL_FLOWS


def _grayscale(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB `[F, H, W, 3]` -> uint8 gray `[F, H, W]`."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VMASError(f"optical flow needs uint8 RGB frames [F, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]) if len(frames) else frames[..., 0]


class _PairwiseFlow(ABC):
    """Mean magnitude of `self.flow(previous, current) -> [H, W, 2]` over consecutive gray frames."""

    @abstractmethod
    def flow(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Dense flow from uint8 gray `previous [H, W]` to `current [H, W]` -> float32 `[H, W, 2]` (dx, dy)."""

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        gray = _grayscale(frames)
        magnitudes = [
            float(np.linalg.norm(self.flow(previous, current), axis=-1).mean())
            for previous, current in zip(gray[:-1], gray[1:])
        ]
        return np.asarray(magnitudes, dtype=np.float32)


@OPTICAL_FLOWS.register("farneback")
class FarnebackFlow(_PairwiseFlow):
    """Dense Farneback flow (`cv2.calcOpticalFlowFarneback`); the defaults are the MV-Align metric's."""

    def __init__(
        self,
        pyr_scale: float = 0.5,
        levels: int = 3,
        winsize: int = 15,
        iterations: int = 3,
        poly_n: int = 5,
        poly_sigma: float = 1.2,
        flags: int = 0,
    ):
        self.params = (pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags)

    def flow(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(previous, current, None, *self.params)


DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


@OPTICAL_FLOWS.register("dis")
class DISFlow(_PairwiseFlow):
    """Dense Inverse Search flow (`cv2.DISOpticalFlow`), faster than Farneback at similar quality.

    Args:
        preset: ultrafast, fast or medium (OpenCV's presets; OpenCV's default is fast).
    """

    def __init__(self, preset: str = "fast"):
        if preset not in DIS_PRESETS:
            raise VMASError(f"optical flow 'dis': unknown preset '{preset}'; known: {', '.join(DIS_PRESETS)}")
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def flow(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        return self.dis.calc(previous, current, None)
