"""Every length of a clip, derived from one small dataclass (seconds, frames, features, tokens)."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SequenceConfig:
    """Clip geometry shared by the data pipeline, the model, the losses and generation.

    Args:
        duration_s: clip length in seconds (the paper trains on 10 s).
        fps: video frames per second fed to the encoder (96 frames / 10 s = 9.6).
        frame_size: square side of a video frame after resize and center crop.
        sample_rate: audio sample rate of the codec (EnCodec 32 kHz).
        token_rate: codec frames per second (EnCodec 32 kHz: hop 640 -> 50 Hz).
        num_codebooks: residual codebooks per token step (K = 4).
        frames_per_feature: video frames per encoder output step (efficient Hiera: 2).
    """

    duration_s: float = 10.0
    fps: float = 9.6
    frame_size: int = 224
    sample_rate: int = 32000
    token_rate: float = 50.0
    num_codebooks: int = 4
    frames_per_feature: int = 2

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

    @property
    def num_features(self) -> int:
        """Encoder output steps per clip, S (48)."""
        return self.num_frames // self.frames_per_feature

    @property
    def feature_rate(self) -> float:
        """Encoder output steps per second (4.8)."""
        return self.fps / self.frames_per_feature

    def frames_for(self, seconds: float) -> int:
        return round(seconds * self.fps)

    def tokens_for(self, seconds: float) -> int:
        return round(seconds * self.token_rate)

    def samples_for(self, seconds: float) -> int:
        return round(seconds * self.sample_rate)

    def with_duration(self, seconds: float) -> "SequenceConfig":
        return replace(self, duration_s=seconds)
