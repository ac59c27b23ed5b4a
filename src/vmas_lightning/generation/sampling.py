"""Next-token sampling: temperature, top-k, top-p, with an optional seeded `torch.Generator`."""
from __future__ import annotations

import zlib
from typing import Optional, Sequence, Union

import torch

Generators = Union[torch.Generator, Sequence[torch.Generator], None]


def filter_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Logits `[..., V]` with everything below the k-th largest set to -inf (k <= 0: unchanged)."""
    if top_k <= 0 or top_k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits `[..., V]` keeping the smallest set of tokens whose probability sum reaches `top_p`
    (the most likely token is always kept; p <= 0 or p >= 1: unchanged)."""
    if top_p <= 0.0 or top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    sorted_probs = sorted_logits.softmax(dim=-1)
    # Drop a token when the tokens before it already reach top_p.
    drop_sorted = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= top_p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next_token(
    logits: torch.Tensor,
    top_k: int = 250,
    top_p: float = 0.0,
    temperature: float = 1.0,
    generator: Generators = None,
) -> torch.Tensor:
    """Draw one token per row from logits `[B, ..., V]` -> int64 `[B, ...]`.

    temperature 0 is greedy decoding; top-k then top-p restrict the candidates. `generator` is one
    generator for the whole batch, or one per batch item (each item then draws the same tokens
    whatever else is in its batch).
    """
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = filter_top_p(filter_top_k(logits / temperature, top_k), top_p)
    probs = logits.softmax(dim=-1)
    if generator is None or isinstance(generator, torch.Generator):
        flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        return flat.reshape(probs.shape[:-1])
    return torch.stack([
        torch.multinomial(row.reshape(-1, row.shape[-1]), 1, generator=g).reshape(row.shape[:-1])
        for row, g in zip(probs, generator)
    ])


def clip_seed(seed: Optional[int], clip_id: str) -> int:
    """A per-clip seed: the same music for a clip whatever its batch, rank or device count."""
    return ((seed or 0) * 1_000_003 + zlib.crc32(clip_id.encode())) % 2**63


def make_generator(seed: Optional[int], device: torch.device | str) -> Optional[torch.Generator]:
    """A `torch.Generator` on `device` seeded with `seed`, or None (global RNG) when seed is None."""
    if seed is None:
        return None
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
