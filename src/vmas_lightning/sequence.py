"""Every length of a clip, derived from one small dataclass (seconds, frames, tokens, samples)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from vmas_lightning.errors import VMASError


@dataclass(frozen=True)
class SequenceConfig:
    """Clip geometry shared by the data pipeline, the model, the losses and generation.

    The data pipeline needs the codec's rates and codebook count without building the codec, so
    they are stated here and checked against the built codec (`check_codec`). Encoder feature steps
    are the encoder's own (`frames_per_feature` of the built encoder, see `VMASModel`).

    Args:
        duration_s: clip length in seconds (the paper trains on 10 s).
        fps: video frames per second fed to the encoder (96 frames / 10 s = 9.6).
        frame_size: square side of a video frame after resize and center crop.
        sample_rate: audio sample rate of the codec (EnCodec 32 kHz).
        token_rate: codec frames per second (EnCodec 32 kHz: hop 640 -> 50 Hz).
        num_codebooks: residual codebooks per token step (K = 4).
        frame_sampling: how a frame is taken from a video of another rate (`read_video`'s
            `sampling`): `last`, the source frame on screen at j / fps; `average`, the time-average
            of the source over frame j's interval [(j - 1/2) / fps, (j + 1/2) / fps), so a cut
            between two of the model's frames shows as a blend that says where it fell. Shards and
            files are read alike; the demo renders its clips as `average` reads them.
    """

    duration_s: float = 10.0
    fps: float = 9.6
    frame_size: int = 224
    sample_rate: int = 32000
    token_rate: float = 50.0
    num_codebooks: int = 4
    frame_sampling: Literal["last", "average"] = "last"

    def __post_init__(self) -> None:
        if self.frame_sampling not in ("last", "average"):
            raise VMASError(f"model.sequence.frame_sampling must be 'last' or 'average', got {self.frame_sampling!r}")

    @property
    def num_frames(self) -> int:
        """Video frames per clip (96)."""
        return self.frames_for(self.duration_s)

    @property
    def num_samples(self) -> int:
        """Audio samples per clip (320,000)."""
        return self.samples_for(self.duration_s)

    @property
    def hop_length(self) -> int:
        """Audio samples per token step (640)."""
        return round(self.sample_rate / self.token_rate)

    @property
    def num_tokens(self) -> int:
        """Token steps per clip, T (500)."""
        return self.tokens_for(self.duration_s)

    @property
    def num_delayed_steps(self) -> int:
        """Autoregressive steps with the delay pattern, T + K - 1 (503)."""
        return self.num_tokens + self.num_codebooks - 1

    def frames_for(self, seconds: float) -> int:
        return round(seconds * self.fps)

    def tokens_for(self, seconds: float) -> int:
        return round(seconds * self.token_rate)

    def samples_for(self, seconds: float) -> int:
        return round(seconds * self.sample_rate)

    def with_duration(self, seconds: float) -> "SequenceConfig":
        return replace(self, duration_s=seconds)

    def check_codec(self, codec: Any) -> None:
        """One-line `VMASError` unless the built `codec` (`sample_rate`, `frame_rate`, `num_codebooks`)
        runs at this config's `sample_rate`, `token_rate` and `num_codebooks`."""
        found = {"sample_rate": (codec.sample_rate, self.sample_rate), "token_rate": (codec.frame_rate, self.token_rate),
                 "num_codebooks": (codec.num_codebooks, self.num_codebooks)}
        wrong = [f"model.sequence.{key} is {mine:g} but the codec has {theirs:g}"
                 for key, (theirs, mine) in found.items() if abs(theirs - mine) > 1e-6 * max(1.0, abs(mine))]
        if wrong:
            raise VMASError(f"{'; '.join(wrong)} ({type(codec).__name__}): set model.sequence to the codec's values")
