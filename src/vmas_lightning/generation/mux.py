"""Write generated music: a wav file, and a copy of the video with the music as its soundtrack.

The picture stream is remuxed packet by packet (no re-encoding, rotation and other stream side
data kept); when the requested container cannot hold the source's video codec the copy goes to
Matroska (`.mkv`), which holds nearly any codec, instead of re-encoding the picture.
"""
from __future__ import annotations

from collections import deque
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile

from vmas_lightning.video_io import fit_length, open_media
from vmas_lightning.errors import InputFileError

# Audio encoder (PyAV codec name) for each output container suffix; anything else gets AAC. Not the
# codec registry `registry.AUDIO_CODECS`.
AUDIO_ENCODER_BY_SUFFIX = {".webm": "libopus", ".ogg": "libopus", ".ogv": "libopus"}
AUDIO_BIT_RATE = 192_000
FALLBACK_SUFFIX = ".mkv"
FRAME_SAMPLES = 4096


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write mono float audio `[N]` (values in [-1, 1]) as 16-bit PCM wav."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0), sample_rate, subtype="PCM_16")
    return path


def add_extension(stem: str | Path, extension: str) -> Path:
    """`stem` + `extension`, keeping any dots already in the stem (`clip.v2` -> `clip.v2.wav`)."""
    stem = Path(stem)
    return stem.with_name(stem.name + extension)


def video_duration(path: str | Path) -> float:
    """Seconds covered by the first video stream of `path` (from its packets' timestamps)."""
    return video_span(path)[0]


def video_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of the first video stream of `path`, as stored (before any display rotation)."""
    with _open_input(path) as container:
        stream = container.streams.video[0]
        return stream.codec_context.width, stream.codec_context.height


def video_span(path: str | Path) -> tuple[float, int]:
    """(seconds covered, packets with a timestamp) of the first video stream of `path`: one pass
    over its packets, nothing decoded (a picture file is one packet)."""
    with _open_input(path) as container:
        stream = container.streams.video[0]
        start, end, count = _packet_span(container, stream)
    return float((end - start) * stream.time_base), count


def mux_audio(
    video_path: str | Path,
    audio: np.ndarray,
    sample_rate: int,
    out_path: str | Path,
    keep_original_audio: bool = False,
) -> Path:
    """Copy `video_path` to `out_path` with `audio` `[N]` as its (default) soundtrack.

    The audio is trimmed or zero-padded to the video stream's duration. With
    `keep_original_audio` the source's audio streams follow as extra, non-default streams.
    Returns the path written (suffix `.mkv` when the requested container rejects the video codec).
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    duration = video_duration(video_path)
    audio = fit_length(np.asarray(audio, dtype=np.float32).reshape(-1), round(duration * sample_rate))
    try:
        _remux(video_path, audio, sample_rate, out_path, keep_original_audio)
        return out_path
    except _UnsupportedCodec:
        out_path.unlink(missing_ok=True)
    fallback = out_path.with_suffix(FALLBACK_SUFFIX)
    try:
        _remux(video_path, audio, sample_rate, fallback, keep_original_audio)
    except _UnsupportedCodec as err:  # e.g. a GIF: no container here takes its pictures as they are
        fallback.unlink(missing_ok=True)
        raise InputFileError(video_path, f"its pictures cannot be copied into {out_path.suffix} or {FALLBACK_SUFFIX} "
                                         f"as they are ({err})") from None
    return fallback


class _UnsupportedCodec(Exception):
    """The output container cannot hold the source's video codec."""


def _open_input(path: str | Path):
    container = open_media(path)
    if not container.streams.video:
        container.close()
        raise InputFileError(path, "has no video stream")
    return container


def _packet_span(container, stream) -> tuple[int, int, int]:
    """(first pts, last pts + duration) of `stream`'s packets, in its time base, and their count."""
    start = end = None
    count = 0
    try:
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            count += 1
            start = packet.pts if start is None else min(start, packet.pts)
            end = max(end or packet.pts, packet.pts + (packet.duration or 0))
    except av.FFmpegError as err:
        raise InputFileError(container.name, f"truncated or corrupt video ({err.strerror})") from None
    if start is None:
        raise InputFileError(container.name, "video stream has no frames")
    return start, end, count


def _encode_audio(stream, audio: np.ndarray, sample_rate: int) -> list:
    packets = []
    for offset in range(0, audio.shape[0], FRAME_SAMPLES):
        frame = av.AudioFrame.from_ndarray(audio[None, offset : offset + FRAME_SAMPLES], format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = offset
        frame.time_base = Fraction(1, sample_rate)
        packets += stream.encode(frame)
    return packets + stream.encode(None)


def _remux(video_path, audio: np.ndarray, sample_rate: int, out_path: Path, keep_original_audio: bool) -> None:
    with _open_input(video_path) as source, av.open(str(out_path), "w") as target:
        video_in = source.streams.video[0]
        try:  # opaque: copy the codec parameters as they are (no encoder needed, e.g. AV1 read by libdav1d)
            video_out = target.add_stream_from_template(video_in, opaque=True)
        except ValueError as err:  # the container does not take this codec
            raise _UnsupportedCodec(str(err)) from None
        codec = AUDIO_ENCODER_BY_SUFFIX.get(out_path.suffix.lower(), "aac")
        music_out = target.add_stream(codec, rate=48000 if codec == "libopus" else sample_rate, layout="mono")
        music_out.bit_rate = AUDIO_BIT_RATE
        music_out.disposition = av.stream.Disposition.default
        copies = {}
        if keep_original_audio:
            for stream in source.streams.audio:
                try:
                    copies[stream.index] = target.add_stream_from_template(stream, opaque=True)
                except ValueError:  # this container cannot hold the original audio codec
                    continue
                copies[stream.index].disposition = 0
        try:
            target.start_encoding()  # the header: some containers refuse a codec only here (VP9 in .mov)
        except av.FFmpegError as err:
            raise _UnsupportedCodec(str(err)) from None
        pending = deque(_encode_audio(music_out, audio, sample_rate))
        for packet in source.demux([video_in, *(source.streams[i] for i in copies)]):
            if packet.size == 0:  # demuxer flush packet (a real packet may lack a dts: H.264 in Matroska)
                continue
            if packet.stream.index == video_in.index:
                stamp = packet.dts if packet.dts is not None else packet.pts
                while stamp is not None and pending and pending[0].dts * pending[0].time_base <= stamp * packet.time_base:
                    target.mux(pending.popleft())
                packet.stream = video_out
            else:
                packet.stream = copies[packet.stream.index]
            target.mux(packet)
        for packet in pending:
            target.mux(packet)
