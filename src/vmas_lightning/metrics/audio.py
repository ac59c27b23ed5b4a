"""Waveform plumbing shared by the metrics: mono mixdown and resampling (julius, on any device)."""
from __future__ import annotations

import julius
import torch


def mono_at(wav: torch.Tensor, sample_rate: int, target_rate: int) -> torch.Tensor:
    """`[B, C, N]` or `[B, N]` at `sample_rate` -> mono float32 `[B, N']` at `target_rate`."""
    if wav.dim() == 3:
        wav = wav.mean(dim=1)
    elif wav.dim() != 2:
        raise ValueError(f"expected a waveform [B, C, N] or [B, N], got shape {tuple(wav.shape)}")
    wav = wav.float()
    if int(sample_rate) != int(target_rate):
        wav = julius.resample_frac(wav, int(sample_rate), int(target_rate))
    return wav
