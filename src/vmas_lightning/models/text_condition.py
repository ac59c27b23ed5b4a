"""`TextCondition`: captions -> the decoder's text memory, with the learned null text.

The text conditioner's features are projected to the decoder's width and the padding's zeroed (as
MusicGen's T5 conditioner does), giving `[B, max_tokens, width]` that the decoder cross-attends to
beside the video. A row without text (no caption, an empty one, or dropped for classifier-free
guidance) gets the learned null text instead: its own null, apart from the video's.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from vmas_lightning.registry import TEXT_CONDITIONERS, PluginSpec


def no_text(caption: str) -> bool:
    """Whether `caption` asks for nothing (empty or blank): its row gets the null text."""
    return not caption.strip()


class TextCondition(nn.Module):
    """`text_condition(captions or None, batch, drop=None) -> memory [B, max_tokens, width]`.

    Args:
        conditioner: `TEXT_CONDITIONERS` spec (`words`, `t5`).
        width: the decoder's width.
    """

    def __init__(self, conditioner: PluginSpec, width: int):
        super().__init__()
        self.conditioner = TEXT_CONDITIONERS.build(conditioner)
        self.proj = nn.Linear(self.conditioner.out_dim, width)
        self.null = nn.Parameter(torch.zeros(self.conditioner.out_dim))

    @property
    def max_tokens(self) -> int:
        return self.conditioner.max_tokens

    def null_memory(self, batch: int) -> torch.Tensor:
        """The null text as memory `[batch, max_tokens, width]`."""
        return self.proj(self.null).expand(batch, self.max_tokens, -1)

    def forward(self, captions: Optional[Sequence[str]], batch: int, drop: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Memory `[batch, max_tokens, width]` of `captions` (B str; None: the null text for every row);
        rows whose caption has no token (empty), or where bool `drop [B]` is True, get the null text."""
        null = self.null_memory(batch)
        if captions is None:
            if not self.training:
                return null
            captions = [""] * batch  # the conditioner stays in the graph (DDP expects every parameter's gradient)
        features, mask = self.conditioner(list(captions))  # [B, L, D], [B, L]
        memory = self.proj(features.to(self.proj.weight.dtype))
        memory = memory * mask[..., None].to(memory.dtype)
        empty = torch.tensor([no_text(caption) for caption in captions], device=mask.device)
        absent = empty | ~mask.any(dim=1)  # no caption, or no token of it (`words` keeps letters and digits only)
        if drop is not None:
            absent = absent | drop
        return torch.where(absent[:, None, None], null.to(memory.dtype), memory)
