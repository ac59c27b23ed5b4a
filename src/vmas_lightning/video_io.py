"""Reading videos and soundtracks with PyAV: any container, frame rate (also variable), size and rotation.

Every failure (missing, empty, truncated, not a media file, no such stream) is an `InputFileError`
naming the file and carrying the decoder's message.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

import av
import numpy as np

from vmas_lightning.errors import InputFileError

NO_AUDIO_TRACK = "no audio track"  # `InputFileError.problem` of a file without audio


@dataclass
class MediaInfo:
    """What a file holds, from its headers and first video frame; width and height as displayed (upright)."""

    path: str
    duration_s: float
    has_video: bool
    has_audio: bool
    fps: Optional[float]
    width: Optional[int]
    height: Optional[int]
    rotation: int = 0


@dataclass
class VideoClip:
    """Decoded frames `[F, H, W, 3]` uint8 RGB, upright (the display rotation applied)."""

    frames: np.ndarray
    fps: float
    duration_s: float
    rotation: int


# File suffixes taken for videos when a folder is scanned (`vmas prepare`, `vmas generate --input-dir`).
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp", ".ogv"})


def open_media(path: str | Path) -> av.container.InputContainer:
    """`av.open` for reading; one-line `InputFileError` for a missing, empty or unreadable file."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    if path.is_dir():
        raise InputFileError(path, "is a folder, not a media file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "empty file")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise InputFileError(path, f"not a readable media file ({_message(err)})") from None


def fit_length(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Mono `[N]` cut or zero-padded at the end to `[num_samples]`."""
    audio = audio[:num_samples]
    return np.pad(audio, (0, num_samples - audio.shape[0]))


def limit_peak(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """Audio scaled down so that no sample exceeds full scale (1.0), never clipped, and the gain
    applied (1.0: left as it is)."""
    peak = float(np.max(np.abs(audio), initial=0.0))
    if peak <= 1.0:
        return audio, 1.0
    return (audio / peak).astype(audio.dtype), 1.0 / peak


def _message(err: Exception) -> str:
    return " ".join(str(getattr(err, "strerror", None) or err).split())


def _stream_duration(container, stream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def probe(path: str | Path) -> MediaInfo:
    """Header facts of a media file; decodes only the first video frame (for its display rotation)."""
    path = Path(path)
    with open_media(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        stream = video or audio
        duration = _stream_duration(container, stream) if stream is not None else 0.0
        width = height = None
        rotation = 0
        if video is not None:
            width, height = video.codec_context.width, video.codec_context.height
            first = next(_decoded_frames(path, container, video), None)
            rotation = int(first[1].rotation) % 360 if first is not None else 0
            if rotation in (90, 270):
                width, height = height, width
        return MediaInfo(
            path=str(path),
            duration_s=duration,
            has_video=video is not None,
            has_audio=audio is not None,
            fps=float(video.average_rate or video.guessed_rate or 0) or None if video else None,
            width=width,
            height=height,
            rotation=rotation,
        )


# A frame at least this many times the target size is first scaled (FFmpeg's area filter) to twice
# it while it is converted to RGB: a 4K frame costs a tenth, and the area filter that follows gives
# nearly the same pixels (tests/test_video_io.py bounds the difference).
PRESCALE_ABOVE = 8


def _upright(frame: av.VideoFrame, size: Optional[int] = None) -> np.ndarray:
    """RGB array `[H, W, 3]` of a frame with its display rotation applied; for a target `size`
    (a later `resize_center_crop`), a frame more than `PRESCALE_ABOVE` times larger comes scaled to
    twice that size on its shorter side."""
    short = min(frame.width, frame.height)
    if size and short >= PRESCALE_ABOVE * size:
        scale = 2 * size / short
        image = frame.reformat(width=round(frame.width * scale), height=round(frame.height * scale),
                               format="rgb24", interpolation="AREA").to_ndarray()
    else:
        image = frame.to_ndarray(format="rgb24")
    quarter_turns = int(round(frame.rotation / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k=quarter_turns)) if quarter_turns else image


def resize_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """`[H, W, 3]` -> `[size, size, 3]`: shorter side to `size` (area filter), then a center crop."""
    import cv2

    height, width = image.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[top : top + size, left : left + size]


def _decoded_frames(path: Path, container, stream) -> Iterator[tuple[float, av.VideoFrame]]:
    """(time in s from the stream start, frame) in presentation order; a broken stream raises."""
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    count = 0
    try:
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            count += 1
            yield float(frame.pts * frame.time_base) - start, frame
    except (av.error.FFmpegError, EOFError) as err:
        raise InputFileError(path, f"video stream is truncated or corrupt after {count} frames ({_message(err)})") from None


# A source frame on screen for less than this fraction of a target frame's interval is left out of
# its average (timestamps rounded to the millisecond would otherwise mix a sliver of each neighbour in).
MIN_AVERAGE_WEIGHT = 0.01


class _IntervalAverage:
    """Target frame j at rate `fps`: the time-average of the source over [(j - 1/2) / fps,
    (j + 1/2) / fps), each source frame standing for the span between the midpoints to its
    neighbours' times (its own interval, as a source at the target's rate maps frame j onto slot j).
    Source frames come in presentation order and are converted (`convert`) once, when placed."""

    def __init__(self, fps: float, first_slot: int, convert: Callable[[av.VideoFrame], np.ndarray]):
        self.fps, self.first_slot, self.convert = fps, first_slot, convert
        self.open: dict[int, list] = {}  # slot -> [float32 weighted sum, total weight]
        self.done: dict[int, np.ndarray] = {}  # slot -> uint8 frame
        self.pending: Optional[tuple[float, av.VideoFrame, Optional[float]]] = None  # (time, frame, interval start)

    def add(self, time: float, frame: av.VideoFrame) -> None:
        if self.pending is not None:
            last_time, last_frame, start = self.pending
            end = (last_time + time) / 2
            self._place(last_frame, last_time - (end - last_time) if start is None else start, end)
            start = end
        else:
            start = None
        self.pending = (time, frame, start)

    def frames(self, count: int) -> list[np.ndarray]:
        """The `count` target frames from `first_slot`; a slot no source frame covers repeats the one before it."""
        if self.pending is not None:
            time, frame, start = self.pending
            half = 0.5 / self.fps if start is None else time - start  # a one-frame video covers its own slot
            self._place(frame, time - half, time + half)
            self.pending = None
            if not self.open and not self.done:  # every source frame ended before the first slot
                self.done[self.first_slot] = self.convert(frame)
        for slot in list(self.open):
            self._close(slot)
        frames: list[np.ndarray] = []
        for slot in range(self.first_slot, self.first_slot + count):
            frames.append(self.done[slot] if slot in self.done else frames[-1] if frames else self.done[min(self.done)])
        return frames

    def _place(self, frame: av.VideoFrame, start: float, end: float) -> None:
        image = None
        for slot in range(math.floor(start * self.fps + 0.5), math.floor(end * self.fps + 0.5) + 1):
            weight = (min(end, (slot + 0.5) / self.fps) - max(start, (slot - 0.5) / self.fps)) * self.fps
            if slot < self.first_slot or weight < MIN_AVERAGE_WEIGHT:
                continue
            image = self.convert(frame).astype(np.float32) if image is None else image
            total = self.open.setdefault(slot, [np.zeros_like(image), 0.0])
            total[0] += weight * image
            total[1] += weight
        for slot in [slot for slot in self.open if (slot + 0.5) / self.fps <= end + 1e-9]:
            self._close(slot)

    def _close(self, slot: int) -> None:
        total, weight = self.open.pop(slot)
        self.done[slot] = np.clip(np.rint(total / weight), 0, 255).astype(np.uint8)


def read_video(
    path: str | Path,
    fps: Optional[float] = None,
    size: Optional[int] = None,
    max_seconds: Optional[float] = None,
    start_s: float = 0.0,
    sampling: str = "last",
) -> VideoClip:
    """Decode the first video stream of `path`.

    Args:
        fps: resample to this rate by timestamps, whatever the source rate, constant or variable
            (see `sampling`); None keeps every source frame.
        sampling: with `fps`, `last`: frame j is the last source frame shown at j / fps; `average`:
            the time-average of the source over [(j - 1/2) / fps, (j + 1/2) / fps)
            (`SequenceConfig.frame_sampling`).
        size: resize the shorter side to `size` and center-crop to `size x size`; None keeps the size.
        max_seconds: stop at this time (s from the stream start).
        start_s: begin at the first frame slot at or after this time (s from the stream start; one
            seek to the keyframe before it). Slot times stay j / fps, so the frames are exactly that
            span of the whole file's: `vmas test` reads a clip of a long source this way.

    Returns:
        `VideoClip` with `frames` uint8 `[F, H, W, 3]`, upright; `duration_s` counts from `start_s`.
    """
    path = Path(path)
    with open_media(path) as container:
        if not container.streams.video:
            raise InputFileError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        duration = _stream_duration(container, stream)
        if max_seconds is not None and duration > 0:
            duration = min(duration, max_seconds)
        if sampling not in ("last", "average"):
            raise ValueError(f"sampling must be 'last' or 'average', got {sampling!r}")
        first_slot = math.ceil(start_s * fps - 1e-6) if fps is not None else 0

        def convert(frame: av.VideoFrame) -> np.ndarray:  # upright, resized and cropped to `size` when given
            image = _upright(frame, size)
            return resize_center_crop(image, size) if size else image

        average = _IntervalAverage(fps, first_slot, convert) if fps is not None and sampling == "average" else None
        if start_s > 0:
            offset = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            # An average also needs the source frames on screen during the first slot's interval, and the one before.
            seek_s = start_s if average is None else (first_slot - 0.5) / fps - 2.0 / float(stream.average_rate or fps)
            container.seek(math.floor((max(0.0, seek_s) + offset) / stream.time_base), stream=stream, backward=True, any_frame=False)
        frames: list[np.ndarray] = []
        times: list[float] = []
        rotation = 0
        previous: Optional[av.VideoFrame] = None
        image: Optional[np.ndarray] = None  # `previous`, converted (once, when a slot first shows it)

        def shown() -> np.ndarray:
            nonlocal image
            if image is None:
                image = convert(previous)
            return image

        for time, frame in _decoded_frames(path, container, stream):
            if max_seconds is not None and time >= max_seconds:
                break
            rotation = int(frame.rotation) % 360
            if average is not None:
                average.add(time, frame)
            elif fps is not None:
                # Source frames up to `time` are shown until this frame appears: fill the target slots before it.
                while previous is not None and (first_slot + len(frames)) / fps < time - 1e-6:
                    frames.append(shown())
            previous, image = frame, None
            if fps is None and time >= start_s - 1e-6:
                frames.append(shown())
            times.append(time)
        if not times:
            raise InputFileError(path, "no decodable video frames")
        if fps is None:
            if not frames:
                raise InputFileError(path, f"no video frames at or after {start_s:g} s")
            span = times[-1] - times[0]
            fps = (len(times) - 1) / span if span > 0 else float(stream.average_rate or 1.0)
            duration = max(duration, times[-1] + 1.0 / fps)
        else:
            duration = max(duration, times[-1] + 1e-6)
            target = math.floor(duration * fps + 1e-6) - first_slot
            if target < 1:
                raise InputFileError(path, f"no video frames at or after {start_s:g} s (the video ends at {duration:.2f} s)")
            if average is not None:
                frames = average.frames(target)
            while len(frames) < target:
                frames.append(shown())
            frames = frames[:target]
        return VideoClip(frames=np.stack(frames), fps=float(fps), duration_s=float(duration - start_s), rotation=rotation)


def frames_at(path: str | Path, times: Sequence[float], size: Optional[int] = None) -> np.ndarray:
    """The frames `read_video(path, fps, size)` puts at `times` (s from the stream start): each the
    last source frame shown at that time (the first frame before it), uint8 `[len(times), H, W, 3]`
    upright. One seek to the keyframe before each time, so only a few frames per time are decoded."""
    path = Path(path)
    with open_media(path) as container:
        if not container.streams.video:
            raise InputFileError(path, "no video stream")
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        frames = []
        for at in times:
            container.seek(math.floor((at + start) / stream.time_base), stream=stream, backward=True, any_frame=False)
            shown = None
            for time, frame in _decoded_frames(path, container, stream):
                if shown is not None and time > at + 1e-6:
                    break
                shown = frame
            if shown is None:
                raise InputFileError(path, f"no decodable video frame at {at:.2f} s")
            image = _upright(shown, size)
            frames.append(resize_center_crop(image, size) if size else image)
        return np.stack(frames)


def source_stride(source_fps: float, max_fps: Optional[float]) -> int:
    """The smallest whole stride k that brings `source_fps` to at most `max_fps` (1 for None)."""
    return 1 if max_fps is None else max(1, math.ceil(source_fps / max_fps - 1e-6))


def iter_frames(path: str | Path, size: Optional[int] = None, max_fps: Optional[float] = None,
                start_s: float = 0.0, end_s: Optional[float] = None) -> tuple[float, Iterator[tuple[float, np.ndarray]]]:
    """Source frames of `path`, never resampled: every frame, or every k-th (`source_stride`) when the
    source runs faster than `max_fps`, so frames are dropped evenly and never duplicated; only those
    shown at times in [`start_s`, `end_s`) (frames before `start_s` are decoded, not converted).

    Returns:
        (the rate of the frames yielded: the source's average rate / k, an iterator of (time in s
        from the stream start, uint8 frame `[H, W, 3]` upright, resized and center-cropped to `size`)).
    """
    path = Path(path)
    container = open_media(path)
    if not container.streams.video:
        container.close()
        raise InputFileError(path, "no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    source_fps = float(stream.average_rate or stream.guessed_rate or 0)
    if source_fps <= 0:
        container.close()
        raise InputFileError(path, "video stream has no frame rate")
    stride = source_stride(source_fps, max_fps)

    def frames() -> Iterator[tuple[float, np.ndarray]]:
        with container:
            for index, (time, frame) in enumerate(_decoded_frames(path, container, stream)):
                if end_s is not None and time >= end_s - 1e-6:
                    return
                if index % stride == 0 and time >= start_s - 1e-6:
                    image = _upright(frame, size)
                    yield time, resize_center_crop(image, size) if size else image

    return source_fps / stride, frames()


def read_audio(path: str | Path, sample_rate: int, mono: bool = True, max_seconds: Optional[float] = None) -> np.ndarray:
    """First audio stream of `path` resampled to `sample_rate`: float32 `[N]` (mono) or `[C, N]`.

    Mono is the mean of the channels: a down-mix that never lifts the level (FFmpeg's default
    stereo and 5.1 down-mixes add +3 dB and more, beyond full scale).
    """
    path = Path(path)
    with open_media(path) as container:
        if not container.streams.audio:
            raise InputFileError(path, NO_AUDIO_TRACK)
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", rate=sample_rate)  # the source's channels
        chunks: list[np.ndarray] = []
        limit = None if max_seconds is None else int(max_seconds * sample_rate)
        count = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
                    count += chunks[-1].shape[-1]
                if limit is not None and count >= limit:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except (av.error.FFmpegError, EOFError) as err:
            raise InputFileError(path, f"audio stream is truncated or corrupt ({_message(err)})") from None
        if not chunks:
            raise InputFileError(path, "audio track has no decodable samples")
        wav = np.concatenate(chunks, axis=-1).astype(np.float32)
        if limit is not None:
            wav = wav[..., :limit]
        return wav.mean(axis=0) if mono else wav


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    audio: Optional[np.ndarray] = None,
    sample_rate: int = 32000,
    rotation: Optional[int] = None,
    codec: Optional[str] = None,
    times: Optional[Sequence[float]] = None,
    options: Optional[Mapping[str, str]] = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write uint8 `frames [F, H, W, 3]` (H, W even) at `fps`, or at explicit `times` (s) for a
    variable frame rate, with an optional mono float `audio [N]` track.

    Codecs by default: H.264 + AAC; VP9 + Opus for `.webm`. `options`: the video encoder's
    (FFmpeg names, e.g. `{"crf": "28"}`); `pix_fmt`: its
    pixel format (`yuvj420p`: full colour range, as phones write).
    """
    path = Path(path)
    webm = path.suffix == ".webm"
    with av.open(str(path), "w") as container:
        rate = Fraction(fps).limit_denominator(1000)
        video = container.add_stream(codec or ("libvpx-vp9" if webm else "libx264"), rate=rate, options=dict(options or {}))
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if times is not None:
            video.time_base = Fraction(1, 1000)
        if rotation is not None:
            video.set_display_rotation(rotation)
        audio_codec = "libopus" if webm else "aac"
        audio_rate = 48000 if audio_codec == "libopus" else sample_rate
        stream = container.add_stream(audio_codec, rate=audio_rate, layout="mono") if audio is not None else None
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if times is not None:
                frame.pts, frame.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for packet in video.encode(frame):
                container.mux(packet)
        container.mux(video.encode())
        if stream is not None:
            wav = np.asarray(audio, dtype=np.float32)
            if audio_rate != sample_rate:
                wav = np.interp(np.arange(round(len(wav) * audio_rate / sample_rate)) * sample_rate / audio_rate,
                                np.arange(len(wav)), wav).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(wav[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = audio_rate, 0, Fraction(1, audio_rate)
            for packet in stream.encode(frame):
                container.mux(packet)
            container.mux(stream.encode())
    return path
