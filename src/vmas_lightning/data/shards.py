"""DISCO-MV shards: the one writer (used by `vmas prepare` and `vmas demo-data`) and the sample decoder.

A dataset folder holds one litdata optimized dataset per split (`train/`, `val/`, `test/`), one
sample per clip (schema in docs/DATA.md), and per split `annotation.json`: the settings its tokens
and beats were made with (`annotation_settings`), which the data module checks against the config.

| key | stored as | decoded |
|---|---|---|
| id, source | str | str |
| start_s | float | float |
| frames | JPEGs packed in one blob | uint8 `[F, H, W, 3]` at the config's fps and size |
| audio | FLAC (16 bit, mono, codec rate) | float32 `[N]` |
| tokens | int16 `[K, T]` | int64 `[K, T]` |
| music_beats, video_beats | uint8 `[T]` | float32 `[T]` |
| meta | JSON str | dict |
| caption | str (empty: none) | str (shards written before captions: empty) |
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import soundfile
import torch
from litdata.streaming.serializers import StringSerializer

from vmas_lightning.beats import BeatConfig, FlowSeries, compute_beats, frames_flow
from vmas_lightning.compat import current_settings
from vmas_lightning.config_file import load_config
from vmas_lightning.video_io import fit_length, limit_peak
from vmas_lightning.registry import AUDIO_CODECS, FRAME_EMBEDDERS, ONSET_DETECTORS, OPTICAL_FLOWS, SOURCE_SEPARATORS
from vmas_lightning.sequence import SequenceConfig

SPLITS = ("train", "val", "test")
ANNOTATION_NAME = "annotation.json"
JPEG_QUALITY = 90
CHUNK_BYTES = "128MB"


@dataclass
class ClipRecord:
    """One clip ready to be written: decoded frames and audio plus its tokens and beats."""

    id: str
    source: str
    start_s: float
    frames: np.ndarray  # uint8 [F, H, W, 3]
    audio: np.ndarray  # float32 [N]
    tokens: np.ndarray  # [K, T]
    music_beats: np.ndarray  # [T]
    video_beats: np.ndarray  # [T]
    meta: dict[str, Any] = field(default_factory=dict)
    caption: str = ""  # words describing the music (a model with text trains on them); empty: none


@dataclass
class ShardConfig:
    """The parts of a training config that decide what goes into a shard."""

    sequence: SequenceConfig
    codec: Any
    beats: BeatConfig

    @classmethod
    def from_configs(cls, paths: str | Path | Sequence[str | Path]) -> "ShardConfig":
        """`model.sequence`, `model.codec` and `data.beats` of a stack of `vmas fit` config files
        (`config_file.load_config`)."""
        run = load_config(paths, trainer=False)
        return cls(sequence=run.model.sequence, codec=run.model.codec, beats=run.data.beats)


# Settings that name a plugin, by config key or `vmas prepare` flag.
PLUGIN_SETTINGS = {"model.codec": AUDIO_CODECS, "data.beats.onset_detector": ONSET_DETECTORS,
                   "data.beats.optical_flow": OPTICAL_FLOWS, "--embedder": FRAME_EMBEDDERS,
                   "--separator": SOURCE_SEPARATORS}


def annotation_settings(config: ShardConfig) -> dict[str, Any]:
    """What decides a shard's stored frames, tokens and beats, by config key (`model.sequence.fps`,
    `model.codec`, `data.beats.peak_window`, ...): JSON values. Not the clip length (a stored clip may
    be longer than the training window; the data module checks the frame count) nor the beat settings
    that act when the data is read (`BeatConfig.READ_TIME`)."""
    sequence = {f"model.sequence.{k}": v for k, v in asdict(config.sequence).items() if k != "duration_s"}
    beats = {f"data.beats.{k}": v for k, v in asdict(config.beats).items() if k not in BeatConfig.READ_TIME}
    return expand_plugin_settings(json.loads(json.dumps({**sequence, "model.codec": config.codec, **beats})))


def expand_plugin_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`settings` with each plugin spec (`PLUGIN_SETTINGS`) expanded to every option (`Registry.expand`),
    so that `encodec` and `{name: encodec, size: 32khz, ...}` compare equal, as the run does them."""
    return {key: PLUGIN_SETTINGS[key].expand(value) if key in PLUGIN_SETTINGS and value is not None else value
            for key, value in settings.items()}


def setting_differences(recorded: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """`(key, recorded, wanted)` for each setting that differs, compared option by option
    (`model.codec.seed`); a plugin whose name differs is one difference (`model.codec.name`), not one
    per option. `wanted` comes expanded (`annotation_settings`, `shard_settings`); `recorded` is
    expanded here (files written before vmas expanded specs hold `encodec`) and read as this version
    compares it (`compat.current_settings`: retired settings dropped, added ones at their former value)."""
    new = _flat(wanted)
    old = current_settings(_flat(expand_plugin_settings(recorded)), new)
    renamed = [key[: -len(".name")] for key in old if key.endswith(".name") and old[key] != new.get(key)]
    return [(key, old.get(key), new.get(key)) for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key) and not any(key.startswith(f"{p}.") and key != f"{p}.name" for p in renamed)]


def _flat(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def annotation_differences(recorded: Mapping[str, Any], config: ShardConfig) -> list[str]:
    """`"<key> <recorded> in the shards, <configured> in the config"` for each annotation setting that differs."""
    return [f"{key} {old!r} in the shards, {new!r} in the config"
            for key, old, new in setting_differences(recorded, annotation_settings(config))]


def pack_jpegs(frames: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """uint8 `[F, H, W, 3]` RGB -> one blob: uint32 count, uint32 lengths, then the JPEGs."""
    encoded = []
    for frame in frames:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        encoded.append(data.tobytes())
    header = np.array([len(encoded), *map(len, encoded)], dtype=np.uint32).tobytes()
    return header + b"".join(encoded)


def packed_frame_count(blob: bytes | memoryview) -> int:
    """Number of frames in a `pack_jpegs` blob (reads the header only)."""
    return int(np.frombuffer(memoryview(blob)[:4], dtype=np.uint32)[0])


def unpack_jpegs(blob: bytes | memoryview, frames: slice = slice(None)) -> np.ndarray:
    """The inverse of `pack_jpegs`: uint8 `[F, H, W, 3]` RGB; only the `frames` range is decoded."""
    buffer = memoryview(blob)
    count = packed_frame_count(buffer)
    lengths = np.frombuffer(buffer[4 : 4 * (count + 1)], dtype=np.uint32)
    offsets = (4 * (count + 1) + np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])).tolist()
    decoded = [
        cv2.imdecode(np.frombuffer(buffer[offsets[i] : offsets[i + 1]], dtype=np.uint8), cv2.IMREAD_COLOR)
        for i in range(count)[frames]
    ]
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in decoded])


def encode_flac(audio: np.ndarray, sample_rate: int) -> bytes:
    """float `[N]` within [-1, 1] (see `limit_peak`) -> 16-bit FLAC; refuses audio it would clip."""
    if np.max(np.abs(audio), initial=0.0) > 1.0:
        raise ValueError("audio beyond full scale: FLAC would clip it (scale it with limit_peak first)")
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, sample_rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def decode_flac(blob: bytes | memoryview) -> np.ndarray:
    audio, _ = soundfile.read(io.BytesIO(bytes(blob)), dtype="float32")
    return audio


def encode_sample(record: ClipRecord, sample_rate: int) -> dict[str, Any]:
    """A `ClipRecord` -> the stored dict (compressed frames and audio, small integer arrays)."""
    return {
        "id": record.id,
        "source": record.source,
        "start_s": float(record.start_s),
        "frames": pack_jpegs(record.frames),
        "audio": encode_flac(record.audio, sample_rate),
        "tokens": np.asarray(record.tokens, dtype=np.int16),
        "music_beats": np.asarray(record.music_beats, dtype=np.uint8),
        "video_beats": np.asarray(record.video_beats, dtype=np.uint8),
        "meta": json.dumps(record.meta, sort_keys=True),
        "caption": record.caption,
    }


def decode_sample(sample: Mapping[str, Any], load_audio: bool = True, load_frames: bool = True,
                  frames: slice = slice(None)) -> dict[str, Any]:
    """A stored dict -> numpy arrays (frames uint8 `[F, H, W, 3]`, audio float32 `[N]`, tokens int64 `[K, T]`).

    `frames` picks the range of frames to decode (all by default).
    """
    out = {
        "id": sample["id"],
        "source": sample["source"],
        "start_s": float(sample["start_s"]),
        "tokens": np.asarray(sample["tokens"], dtype=np.int64),
        "music_beats": np.asarray(sample["music_beats"], dtype=np.float32),
        "video_beats": np.asarray(sample["video_beats"], dtype=np.float32),
        "meta": json.loads(sample["meta"]),
        "caption": sample.get("caption", ""),
    }
    if load_frames:
        out["frames"] = unpack_jpegs(sample["frames"], frames)
    if load_audio:
        out["audio"] = decode_flac(sample["audio"])
    return out


class ClipAnnotator:
    """Adds what a shard stores beyond pixels and samples: codec tokens and beats (built once)."""

    def __init__(self, config: ShardConfig):
        self.config = config
        self.codec = AUDIO_CODECS.build(config.codec)
        config.sequence.check_codec(self.codec)

    @torch.no_grad()
    def __call__(self, clip_id: str, source: str, start_s: float, frames: np.ndarray, audio: np.ndarray,
                 meta: dict[str, Any] | None = None, flow: FlowSeries | None = None, caption: str = "") -> ClipRecord:
        """frames uint8 `[F, H, W, 3]` at the config's fps, audio float32 `[N]` at its rate -> `ClipRecord`.

        `flow` is the clip's window of its source video's flow (`beats.flow_series.video_flow`); without
        it the flow is computed on `frames` (clips rendered at the config's fps, as the demo's).
        Audio beyond full scale is scaled down, not clipped; `meta["audio_gain"]` records the factor.
        """
        seq = self.config.sequence
        audio, gain = limit_peak(fit_length(np.asarray(audio, dtype=np.float32), seq.num_samples))
        meta = dict(meta or {})
        if gain < 1.0:
            meta["audio_gain"] = round(gain, 6)
        tokens = self.codec.encode(torch.from_numpy(audio)[None, None])[0, :, : seq.num_tokens].cpu().numpy()
        if flow is None:
            flow = frames_flow(frames, seq.fps, self.config.beats)
        beats = compute_beats(audio, seq.sample_rate, flow, seq, self.config.beats)
        return ClipRecord(
            id=clip_id, source=source, start_s=start_s, frames=frames, audio=audio, tokens=tokens,
            music_beats=beats["music_beats"], video_beats=beats["video_beats"], meta=meta, caption=caption,
        )


class PlainStrings(StringSerializer):
    """Strings stay strings, also a `source` naming an existing video (litdata would embed the file)."""

    def can_serialize(self, data: Any) -> bool:
        return isinstance(data, str)


class ShardWriter:
    """Writes `ClipRecord`s of one split, annotated with `config`, into a litdata optimized dataset folder.

    Use as a context manager; `annotation.json` (`annotation_settings(config)`) and then the index
    are written on exit. The writer owns its folder: a dataset already there (index, annotation and
    chunks) is removed first, so writing again replaces it. Nothing is created for a split that
    receives no clip.
    """

    def __init__(self, output_dir: str | Path, config: ShardConfig):
        self.output_dir = Path(output_dir)
        self.config = config
        self._writer = None
        self.count = 0
        if self.output_dir.is_dir():
            for stale in [*self.output_dir.glob("*index.json"), *self.output_dir.glob("chunk-*.bin"),
                          *self.output_dir.glob(ANNOTATION_NAME)]:
                stale.unlink()

    def write(self, record: ClipRecord) -> None:
        if self._writer is None:
            from litdata.streaming.writer import BinaryWriter

            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._writer = BinaryWriter(str(self.output_dir), chunk_bytes=CHUNK_BYTES, serializers={"str": PlainStrings()})
        self._writer.add_item(self.count, encode_sample(record, self.config.sequence.sample_rate))
        self.count += 1

    def close(self) -> None:
        if self._writer is not None:
            settings = json.dumps(annotation_settings(self.config), indent=1, sort_keys=True)
            (self.output_dir / ANNOTATION_NAME).write_text(settings + "\n", encoding="utf-8")
            self._writer.done()
            self._writer.merge()
            self._writer = None

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is None:
            self.close()
