"""Training-time video augmentations that stand for the ways a video file reaches `read_video`.

A user's upload is not the shard's frames: it comes at another frame rate (and `read_video`
resamples it to the model's rate, so a cut can show a frame late), at another size (scaled down to
the model's, so edges are soft), re-encoded (H.264, HEVC, VP9 artefacts and chroma subsampling),
letter- or pillar-boxed, brighter or darker, in limited or full colour range. `VideoAugment` draws
one such "upload" per training clip and applies it to every frame of the clip, as a file would; the
tokens, beats and overlap labels stay where the shard put them (on the true cuts), so the model
learns to hear the cut, not the renderer's exact pixels.

Every draw depends only on (seed, epoch, sample index): a resumed run augments exactly as the
uninterrupted one.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from vmas_lightning.config import VideoAugmentConfig


def source_frame_indices(rng: np.random.Generator, num_frames: int, fps: float, source_fps: float) -> np.ndarray:
    """int `[num_frames]`: the stored frame each slot shows when the clip comes from a source at
    `source_fps` resampled to `fps` (frame times of the source start at a random phase).

    Slot j (time j / fps) shows the last source frame at or before it, time s; s lies between
    stored frames floor(s * fps) and that + 1, and is placed on the later one with probability
    equal to its fraction of the way there, so a cut between them shows as often as at s. One
    draw per source frame: a source slower than `fps` repeats its frames, as `read_video` does.
    """
    phase = rng.uniform(0.0, 1.0 / source_fps)
    slot_times = np.arange(num_frames) / fps
    source_index = np.floor((slot_times - phase) * source_fps + 1e-9).clip(min=0).astype(np.int64)
    position = np.maximum(phase + source_index / source_fps, 0.0) * fps  # in stored frames, <= j
    draws = rng.random(int(source_index.max()) + 1)[source_index]
    chosen = np.floor(position + 1e-9) + (draws < position - np.floor(position + 1e-9))
    return np.minimum(chosen, np.arange(num_frames)).clip(0, num_frames - 1).astype(np.int64)


class VideoAugment:
    """`augment(frames, rng) -> frames`: uint8 `[F, H, W, 3]` -> one random "upload" of the clip
    (`VideoAugmentConfig`), the same parameters for every frame, at the model's `fps`."""

    def __init__(self, config: VideoAugmentConfig, fps: float):
        self.config = config
        self.fps = fps

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        if not cfg.enabled or rng.random() >= cfg.probability:
            return frames
        num_frames, height, width = frames.shape[:3]
        if cfg.source_fps is not None:
            low, high = cfg.source_fps
            source_fps = math.exp(rng.uniform(math.log(low), math.log(high)))
            frames = frames[source_frame_indices(rng, num_frames, self.fps, source_fps)]
        scale = rng.uniform(*cfg.upscale)
        side = rng.uniform(*cfg.crop)
        big_h, big_w = round(height * scale), round(width * scale)
        crop_h, crop_w = max(1, round(big_h * side)), max(1, round(big_w * side))
        top, left = int(rng.integers(0, big_h - crop_h + 1)), int(rng.integers(0, big_w - crop_w + 1))
        bars = rng.uniform(0.0, cfg.pad)
        bar_axis = int(rng.integers(2))  # 0: letterbox (bars above and below), 1: pillarbox
        bar_split = rng.uniform()
        gains = [1.0 + rng.uniform(-limit, limit) for limit in (cfg.brightness, cfg.contrast, cfg.saturation)]
        mixup = rng.random() < cfg.range_mixup
        to_limited = rng.random() < 0.5
        quality = None if cfg.jpeg_quality is None else int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        chroma_444 = rng.random() < cfg.chroma_444

        out = np.empty_like(frames)
        for index, frame in enumerate(frames):
            image = frame
            if (big_h, big_w) != (height, width):
                image = cv2.resize(image, (big_w, big_h), interpolation=cv2.INTER_LINEAR)
            image = image[top : top + crop_h, left : left + crop_w]
            shrink = crop_w > width  # area filter down, linear up, as `read_video` resizes
            out[index] = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        out = self._bars(out, bars, bar_axis, bar_split)
        out = self._colour(out, *gains, mixup=mixup, to_limited=to_limited)
        if quality is not None:
            out = jpeg_round_trip(out, quality, chroma_444)
        return out

    @staticmethod
    def _bars(frames: np.ndarray, fraction: float, axis: int, split: float) -> np.ndarray:
        """Black bars of `fraction` of the side on `axis` (0: rows, 1: columns), the content squeezed
        between them (area filter), as a boxed upload looks after `read_video`'s crop."""
        side = frames.shape[1 + axis]
        total = int(round(fraction * side))
        if total < 1:
            return frames
        first = int(round(total * split))
        height, width = frames.shape[1:3]
        inner = (width, height - total) if axis == 0 else (width - total, height)
        boxed = np.zeros_like(frames)
        for index, frame in enumerate(frames):
            squeezed = cv2.resize(frame, inner, interpolation=cv2.INTER_AREA)
            if axis == 0:
                boxed[index, first : first + inner[1]] = squeezed
            else:
                boxed[index, :, first : first + inner[0]] = squeezed
        return boxed

    @staticmethod
    def _colour(frames: np.ndarray, brightness: float, contrast: float, saturation: float,
                mixup: bool, to_limited: bool) -> np.ndarray:
        """Level, contrast (about the clip's mean), saturation (about each pixel's grey) and a
        full/limited range mix-up, in float, rounded back to uint8."""
        if (brightness, contrast, saturation) == (1.0, 1.0, 1.0) and not mixup:
            return frames
        image = frames.astype(np.float32)
        image = (image - image.mean()) * contrast + image.mean()
        grey = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        image = (image - grey[..., None]) * saturation + grey[..., None]
        image = image * brightness
        if mixup:
            image = image * (219.0 / 255.0) + 16.0 if to_limited else (image - 16.0) * (255.0 / 219.0)
        return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def jpeg_round_trip(frames: np.ndarray, quality: int, chroma_444: bool = False) -> np.ndarray:
    """uint8 RGB `[F, H, W, 3]` through JPEG at `quality`, 4:2:0 chroma (or 4:4:4) and back."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
              cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444 if chroma_444 else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
    out = np.empty_like(frames)
    for index, frame in enumerate(frames):
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise ValueError("JPEG encoding failed")
        out[index] = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out
