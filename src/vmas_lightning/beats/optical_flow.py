"""Video beats: optical-flow plugins (`OPTICAL_FLOWS`), `(frames uint8 [F, H, W, 3]) -> mean flow magnitude [F - 1]`.

Value i is the mean per-pixel flow magnitude (pixels) between frames i and i + 1: `farneback` and
`dis` on grayscale frames with OpenCV (float64, `cv2.cartToPolar` + `cv2.mean` as the AV-Align
protocol computes it, so MV-Align runs the `farneback` plugin), `raft` (the paper's flow) with
torchvision's RAFT on RGB (float32).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import cv2
import numpy as np

from vmas_lightning.errors import VMASError
from vmas_lightning.registry import OPTICAL_FLOWS


def _rgb_frames(frames: np.ndarray) -> np.ndarray:
    """`frames` as uint8 RGB `[F, H, W, 3]`, or a one-line error."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise VMASError(f"optical flow needs uint8 RGB frames [F, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    return frames


def _grayscale(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB `[F, H, W, 3]` -> uint8 gray `[F, H, W]`."""
    frames = _rgb_frames(frames)
    return np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames]) if len(frames) else frames[..., 0]


class _PairwiseFlow(ABC):
    """Mean magnitude of `self.flow(previous, current) -> [H, W, 2]` over consecutive gray frames, float64."""

    @abstractmethod
    def flow(self, previous: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Dense flow from uint8 gray `previous [H, W]` to `current [H, W]` -> float32 `[H, W, 2]` (dx, dy)."""

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        gray = _grayscale(frames)
        magnitudes = []
        for previous, current in zip(gray[:-1], gray[1:]):
            flow = self.flow(previous, current)
            magnitudes.append(cv2.mean(cv2.cartToPolar(flow[..., 0], flow[..., 1])[0])[0])
        return np.asarray(magnitudes, dtype=np.float64)


@OPTICAL_FLOWS.register("farneback")
class FarnebackFlow(_PairwiseFlow):
    """Dense Farneback flow (`cv2.calcOpticalFlowFarneback`); the defaults are the MV-Align protocol's
    (`metrics.mv_align.FARNEBACK`)."""

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


RAFT_SIZES = ("small", "large")
RAFT_MIN_SIDE = 128
RAFT_DEFAULT_WEIGHTS = "C_T_V2"  # torchvision's DEFAULT for both sizes (FlyingChairs + FlyingThings3D)


def raft_weights_file(size: str, name: str) -> tuple[Path, str]:
    """Where torch.hub keeps torchvision's RAFT weights `name` of `size` (no download), and their URL."""
    import torch
    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights

    enum = {"small": Raft_Small_Weights, "large": Raft_Large_Weights}[size]
    known = [w.name for w in enum]
    if name not in known and name != "DEFAULT":
        raise VMASError(f"optical flow 'raft': no torchvision weights '{name}' for raft_{size}; known: "
                        f"{', '.join(known)}, DEFAULT, or a local .pth path")
    url = enum[name].url if name != "DEFAULT" else enum.DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name, url


@OPTICAL_FLOWS.register("raft")
class RAFTFlow:
    """RAFT (Teed & Deng, ECCV 2020), the flow the paper uses, from torchvision (`raft_small`, `raft_large`).

    Frames go in as RGB scaled to [-1, 1] (torchvision's `OpticalFlow` transform), padded at the
    bottom and right by edge replication to a multiple of 8 and at least `RAFT_MIN_SIDE` (RAFT's
    correlation pyramid needs 128 px); the flow of the last refinement is cropped back to the frame
    before its magnitude is averaged.

    Args:
        size: small (1.0 M parameters) or large (5.3 M).
        pretrained: a torchvision weight name of that size (C_T_V2, C_T_V1, ...; DEFAULT), looked up
            in torch.hub's checkpoint cache and never downloaded, or the path of a local state-dict
            file; None: random weights from `seed`, only to test shapes (the flow means nothing).
        num_flow_updates: RAFT's refinement iterations (torchvision's default 12).
        batch_size: frame pairs per forward pass.
        device: auto (CUDA when available), cpu or cuda.
        seed: random weights' seed (`pretrained: null`).
    """

    def __init__(self, size: str = "small", pretrained: Optional[str] = RAFT_DEFAULT_WEIGHTS, num_flow_updates: int = 12,
                 batch_size: int = 8, device: str = "auto", seed: int = 0):
        import torch
        from torchvision.models.optical_flow import raft_large, raft_small

        from vmas_lightning.models.pretrained import check_state_dict, load_checkpoint_file, seeded_init

        if size not in RAFT_SIZES:
            raise VMASError(f"optical flow 'raft': unknown size '{size}'; known: {', '.join(RAFT_SIZES)}")
        for name, value in (("num_flow_updates", num_flow_updates), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise VMASError(f"optical flow 'raft': {name} must be an integer >= 1, got {value!r}")
        if device not in ("auto", "cpu", "cuda"):
            raise VMASError(f"optical flow 'raft': unknown device '{device}'; known: auto, cpu, cuda")
        if device == "cuda" and not torch.cuda.is_available():
            raise VMASError("optical flow 'raft': device cuda requested but CUDA is not available")
        with seeded_init(seed):
            self.network = (raft_small if size == "small" else raft_large)(weights=None, progress=False)
        if pretrained is not None:
            source, url = Path(pretrained).expanduser(), None
            if not source.suffix:  # a torchvision weight name, not a file
                source, url = raft_weights_file(size, pretrained)
            how = (f"download {url} to {source}" if url else "pass the path of a torchvision RAFT state dict") + \
                f" or pass a local .pth path as pretrained (torchvision's Raft_{size.capitalize()}_Weights)"
            state = load_checkpoint_file(source, f"RAFT ({size})", how)
            check_state_dict(self.network, state, str(source), f"a torchvision raft_{size} state dict", how)
            self.network.load_state_dict(state)
        self.device = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
        self.network.eval().to(self.device)
        self.num_flow_updates, self.batch_size = num_flow_updates, batch_size

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        frames = _rgb_frames(frames)
        if len(frames) < 2:
            return np.zeros(0, dtype=np.float32)
        height, width = frames.shape[1:3]
        images = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)  # [F, 3, H, W] in [-1, 1]
        padded_h, padded_w = (max(RAFT_MIN_SIDE, side + -side % 8) for side in (height, width))
        images = F.pad(images, (0, padded_w - width, 0, padded_h - height), mode="replicate")
        magnitudes = []
        with torch.inference_mode():
            for start in range(0, len(frames) - 1, self.batch_size):
                stop = min(start + self.batch_size, len(frames) - 1)
                first = images[start:stop].to(self.device)
                second = images[start + 1 : stop + 1].to(self.device)
                flow = self.network(first, second, num_flow_updates=self.num_flow_updates)[-1][:, :, :height, :width]
                magnitudes.append(flow.norm(dim=1).mean(dim=(1, 2)).float().cpu())
        return torch.cat(magnitudes).numpy().astype(np.float32)
