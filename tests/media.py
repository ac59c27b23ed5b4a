"""Small real media files for tests, written with PyAV (deterministic for the same arguments)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from vmas_lightning.video_io import write_video  # noqa: F401  (re-exported for tests)


def write_audio_only(path: str | Path, audio: np.ndarray, sample_rate: int = 32000) -> Path:
    """An audio-only file (e.g. .m4a) with a mono AAC track."""
    path = Path(path)
    with av.open(str(path), "w", format="mp4" if path.suffix in (".m4a", ".mp4") else None) as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.asarray(audio, np.float32)[None], format="fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
        container.mux(stream.encode())
    return path


def write_surround_video(path: str | Path, frames: np.ndarray, fps: float, audio: np.ndarray,
                         sample_rate: int = 48000) -> Path:
    """H.264 video with an AAC track of `audio [C, N]`: 2 channels as stereo, 6 as 5.1."""
    path = Path(path)
    layout = {2: "stereo", 6: "5.1"}[len(audio)]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = container.add_stream("aac", rate=sample_rate, layout=layout)
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
        container.mux(video.encode())
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, dtype=np.float32), format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
        container.mux(sound.encode(frame))
        container.mux(sound.encode())
    return path


def gradient_frames(num_frames: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """uint8 `[F, H, W, 3]`: a textured image whose brightness changes frame by frame."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 200, size=(height // 8, width // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return np.stack([np.clip(base.astype(np.int16) + (i * 7) % 50, 0, 255).astype(np.uint8) for i in range(num_frames)])


def sine(seconds: float, sample_rate: int = 32000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def truncated_copy(source: str | Path, target: str | Path, keep: float = 0.5) -> Path:
    """The first `keep` fraction of a file's bytes (a download cut short)."""
    data = Path(source).read_bytes()
    Path(target).write_bytes(data[: int(len(data) * keep)])
    return Path(target)


def make_video(path, seconds, fps, width=32, height=24, rotation=None, audio_rate=None, codec="libx264"):
    """A small synthetic video (moving gradient), optionally rotated and with a sine soundtrack."""
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation is not None:
            video.set_display_rotation(rotation)
        audio = container.add_stream("aac", rate=audio_rate, layout="mono") if audio_rate else None
        for i in range(round(seconds * fps)):
            image = np.full((height, width, 3), (i * 37) % 256, np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        container.mux(video.encode())
        if audio is not None:
            samples = sine(seconds, audio_rate)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = audio_rate, 0, Fraction(1, audio_rate)
            container.mux(audio.encode(frame))
            container.mux(audio.encode())
    return path


def write_gif(path, frames: np.ndarray, fps: float = 10.0):
    """An animated GIF of uint8 RGB `frames` `[F, H, W, 3]` (whatever `path`'s suffix says)."""
    with av.open(str(path), "w", format="gif") as container:
        stream = container.add_stream("gif", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb8"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def decoded_seconds(path, stream_index):
    """Seconds of audio decoded from stream `stream_index` of a file."""
    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        return sum(frame.samples for frame in container.decode(stream)) / stream.rate


def video_packets(path):
    """The encoded video packets as (bytes, pts in seconds, keyframe): equal lists mean the picture
    was copied packet for packet, with its timing, not re-encoded."""
    with av.open(str(path)) as container:
        return [(bytes(p), None if p.pts is None else p.pts * p.time_base, p.is_keyframe)
                for p in container.demux(video=0) if p.size]


def first_frame_time(path) -> float:
    """Seconds from the video stream's start to its first decodable frame (0 for an intact stream)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream), None)
        assert frame is not None, f"{path}: no decodable video frame"
        return float((frame.pts - (stream.start_time or 0)) * stream.time_base)


def texture(seed: int, side: int = 256) -> np.ndarray:
    """uint8 `[side, side, 3]`: a smooth random texture (blurred noise stretched to full contrast)."""
    noise = np.random.default_rng(seed).random((side, side, 3)).astype(np.float32) * 255
    blurred = cv2.GaussianBlur(noise, (0, 0), 3)
    return ((blurred - blurred.min()) / (blurred.max() - blurred.min()) * 255).astype(np.uint8)


def cut_frames(cuts_s, seconds: float, fps: float, size: int = 64) -> np.ndarray:
    """uint8 `[F, size, size, 3]` at `fps`: a slow pan (4 px/s) over a texture that changes at each cut time (s)."""
    textures = [texture(seed) for seed in range(len(cuts_s) + 1)]
    frames = []
    for j in range(round(seconds * fps)):
        t = j / fps
        shot = int(np.searchsorted(cuts_s, t, side="right"))
        left = 40 + 4.0 * t
        warp = np.array([[1.0, 0.0, -left], [0.0, 1.0, -40.0]])
        frames.append(cv2.warpAffine(textures[shot], warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101))
    return np.stack(frames)


def blob_video(events, fps: float, seconds: float, size: int = 64) -> np.ndarray:
    """uint8 [F, size, size, 3]: a still Gaussian blob that jumps 8 px sideways at each event time."""
    yy, xx = np.mgrid[:size, :size]
    event_frames = {round(t * fps) for t in events}
    x0, frames = size / 2 - 4, []
    for i in range(int(seconds * fps)):
        if i in event_frames:
            x0 = size / 2 + 4 if x0 < size / 2 else size / 2 - 4
        blob = 255 * np.exp(-((xx - x0) ** 2 + (yy - size / 2) ** 2) / (2 * 6**2))
        frames.append(np.repeat(blob[..., None], 3, -1).astype(np.uint8))
    return np.stack(frames)
