"""MusicGen's delay pattern: codebook k is shifted right by k steps, keeping every code.

`T` token steps become `T + K - 1` delayed steps; the empty cells hold `pad_id`. Reverting takes
`T = L - K + 1` steps back from each codebook, so no code is dropped (the common recipe that cuts
the delayed sequence to `T` loses the last `k` codes of codebook `k`).
"""
from __future__ import annotations

import torch


def apply_delay(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """[B, K, T] -> [B, K, T + K - 1] with `delayed[:, k, k + t] = tokens[:, k, t]`."""
    batch, codebooks, steps = tokens.shape
    delayed = tokens.new_full((batch, codebooks, steps + codebooks - 1), pad_id)
    for k in range(codebooks):
        delayed[:, k, k : k + steps] = tokens[:, k]
    return delayed


def revert_delay(delayed: torch.Tensor) -> torch.Tensor:
    """[B, K, T + K - 1, ...] -> [B, K, T, ...]: `out[:, k, t] = delayed[:, k, k + t]`.

    Works for tokens `[B, K, L]` and for logits `[B, K, L, V]` alike.
    """
    codebooks = delayed.shape[1]
    steps = delayed.shape[2] - codebooks + 1
    if steps < 1:
        raise ValueError(f"delayed sequence of {delayed.shape[2]} steps is shorter than {codebooks} codebooks")
    return torch.stack([delayed[:, k, k : k + steps] for k in range(codebooks)], dim=1)
