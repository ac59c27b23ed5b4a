"""Video motion for beats: the mean optical-flow magnitude of a clip's frames (`FlowSeries`).

The magnitude of the flow between two consecutive frames is placed at the time of the later one,
when the changed frame appears (as MV-Align does).

Flow is computed on consecutive *source* frames (`video_flow`; `source_flow` is also MV-Align's
path to a video file's frames), never on frames resampled to the
encoder's 9.6 fps: resampling 25 fps to 9.6 fps keeps frames 2 or 3 source frames apart in turn,
so a smooth camera motion gets a zig-zag magnitude whose every zig is a local maximum.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from vmas_lightning.beats.plugins import build_plugin
from vmas_lightning.config import BeatConfig
from vmas_lightning.errors import InputFileError
from vmas_lightning.registry import OPTICAL_FLOWS


@dataclass(frozen=True)
class FlowSeries:
    """Mean flow magnitude per pair of consecutive frames, `magnitude [P]` (pixels), at `times [P]`
    (s from the clip start: the later frame of each pair), computed on frames at `fps`; the clip
    lasts `duration_s`."""

    magnitude: np.ndarray
    times: np.ndarray
    fps: float
    duration_s: float

    @classmethod
    def uniform(cls, magnitude: np.ndarray, fps: float) -> "FlowSeries":
        """Flow of frames at a constant `fps` starting at 0 s: value i sits at (i + 1) / fps."""
        magnitude = np.asarray(magnitude, dtype=np.float32).reshape(-1)
        return cls(magnitude, (np.arange(magnitude.size) + 1) / fps, fps, (magnitude.size + 1) / fps)

    def window(self, start_s: float, duration_s: float) -> "FlowSeries":
        """The pairs whose later frame lies in (start_s, start_s + duration_s), times from start_s:
        the flow a clip cut there sees (not the jump into its first frame)."""
        keep = (self.times > start_s + 1e-6) & (self.times < start_s + duration_s - 1e-6)
        return FlowSeries(self.magnitude[keep], self.times[keep] - start_s, self.fps, duration_s)


def frames_flow(frames: np.ndarray, fps: float, config: BeatConfig) -> FlowSeries:
    """Flow of frames uint8 `[F, H, W, 3]` rendered at `fps` (synthetic clips; a video file goes
    through `video_flow`, which never sees duplicated frames)."""
    return FlowSeries.uniform(build_plugin(OPTICAL_FLOWS, config.optical_flow)(frames), fps)


FLOW_CHUNK = 64  # frames per call of the flow plugin: bounded memory on long videos, batches for `raft`
FLOW_CHUNK_BYTES = 256 * 2**20  # ... and at most this much frame data (native-size frames for MV-Align)


def source_flow(
    path: str | Path,
    flow: Callable[[np.ndarray], np.ndarray],
    size: Optional[int] = None,
    max_fps: Optional[float] = None,
    start_s: float = 0.0,
    duration_s: Optional[float] = None,
) -> FlowSeries:
    """Flow of a video file's consecutive source frames (`video_io.iter_frames`: every frame, or every
    k-th for `max_fps`; never resampled) shown in [start_s, start_s + duration_s) (the whole video
    for None), resized and center-cropped to `size` (None: the native size), by the optical-flow
    callable `flow` run on chunks of at most `FLOW_CHUNK` frames and `FLOW_CHUNK_BYTES`. Times are
    from `start_s`; magnitudes keep the flow's dtype. The one flow path of video beats (`video_flow`)
    and MV-Align (`metrics.mv_align.source_peaks`). Raises `InputFileError` for fewer than 2 frames."""
    from vmas_lightning.video_io import iter_frames

    end_s = None if duration_s is None else start_s + duration_s
    fps, frames = iter_frames(path, size=size, max_fps=max_fps, start_s=start_s, end_s=end_s)
    magnitudes, times, chunk, chunk_times = [], [], [], []
    for time, frame in frames:
        chunk.append(frame)
        chunk_times.append(time - start_s)
        if len(chunk) > min(FLOW_CHUNK, max(1, FLOW_CHUNK_BYTES // frame.nbytes)):
            magnitudes.append(flow(np.stack(chunk)))
            times.append(chunk_times[1:])
            chunk, chunk_times = chunk[-1:], chunk_times[-1:]
    if len(chunk) > 1:
        magnitudes.append(flow(np.stack(chunk)))
        times.append(chunk_times[1:])
    if not magnitudes:
        span = "" if duration_s is None else f" in {start_s:g}-{end_s:g} s"
        raise InputFileError(path, f"needs at least 2 video frames{span} for optical flow, got {len(chunk)}")
    last = chunk_times[-1]
    duration = duration_s if duration_s is not None else last + 1.0 / fps
    return FlowSeries(np.concatenate(magnitudes), np.concatenate(times), fps, duration)


def video_flow(path: str | Path, config: BeatConfig, size: int) -> FlowSeries:
    """Flow of a whole video file as video beats use it (`source_flow`): `config.optical_flow` on the
    source frames at most `config.flow_fps`, resized and center-cropped to `size`."""
    return source_flow(path, build_plugin(OPTICAL_FLOWS, config.optical_flow), size, config.flow_fps)
