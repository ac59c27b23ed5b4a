"""`words`: a small trainable text encoder over hashed words, for captions with a small vocabulary (the demo's).

A caption is lower-cased and split into words (runs of letters and digits); each word's id is its CRC-32
modulo `num_buckets - 1`, plus one (0 pads), so no vocabulary file is needed and the ids are the same
in every process. Word embeddings plus learned positions go through `num_layers` transformer encoder
layers (pre-norm) that see only the real words.
"""
from __future__ import annotations

import re
import zlib
from typing import Sequence

import torch
from torch import nn

from vmas_lightning.errors import VMASError
from vmas_lightning.registry import TEXT_CONDITIONERS

WORD = re.compile(r"[a-z0-9]+")


def word_ids(caption: str, num_buckets: int, max_tokens: int) -> list[int]:
    """The caption's first `max_tokens` words as ids in [1, num_buckets) (hashed, lower-cased)."""
    return [zlib.crc32(word.encode()) % (num_buckets - 1) + 1 for word in WORD.findall(caption.lower())[:max_tokens]]


class HashedWordEncoder(nn.Module):
    """`encoder(captions: list of B str) -> (features [B, max_tokens, dim], mask bool [B, max_tokens])`."""

    def __init__(self, dim: int, num_layers: int, num_heads: int, num_buckets: int, max_tokens: int, dropout: float):
        super().__init__()
        self.out_dim, self.max_tokens, self.num_buckets = dim, max_tokens, num_buckets
        self.embed = nn.Embedding(num_buckets, dim, padding_idx=0)
        self.positions = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, num_heads, 4 * dim, dropout, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def token_ids(self, captions: Sequence[str]) -> torch.Tensor:
        """int64 `[B, max_tokens]`, 0 after each caption's words."""
        ids = torch.zeros(len(captions), self.max_tokens, dtype=torch.long)
        for row, caption in enumerate(captions):
            words = word_ids(caption, self.num_buckets, self.max_tokens)
            ids[row, : len(words)] = torch.tensor(words, dtype=torch.long)
        return ids.to(self.positions.device)

    def forward(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.token_ids(captions)
        mask = ids > 0
        hidden = self.embed(ids) + self.positions
        # a caption without words attends to everything (its row is masked out after): no all-masked softmax
        ignore = ~mask & mask.any(dim=1, keepdim=True)
        return self.norm(self.layers(hidden, src_key_padding_mask=ignore)), mask


@TEXT_CONDITIONERS.register("words")
def words(dim: int = 128, num_layers: int = 1, num_heads: int = 4, num_buckets: int = 4096, max_tokens: int = 16,
          dropout: float = 0.1) -> HashedWordEncoder:
    """Trainable hashed-word encoder: `dim` wide, `num_layers` layers of `num_heads` heads, words hashed into
    `num_buckets`, the first `max_tokens` words of a caption kept."""
    if num_buckets < 2 or max_tokens < 1 or dim % num_heads:
        raise VMASError(f"words: need num_buckets >= 2, max_tokens >= 1 and dim divisible by num_heads; got "
                        f"num_buckets={num_buckets}, max_tokens={max_tokens}, dim={dim}, num_heads={num_heads}")
    return HashedWordEncoder(dim, num_layers, num_heads, num_buckets, max_tokens, dropout)
