"""`t5`: MusicGen's text conditioner, a frozen T5 encoder (transformers `T5EncoderModel`, `t5-base` as
MusicGen's) with its tokenizer. Captions are padded (and cut) to `max_tokens`; the features of padding
are masked, as audiocraft's `T5Conditioner` zeroes them. A checkpoint holds the encoder's weights and
records where the tokenizer came from (its hub id or folder), which inference reads again: the one
thing of such a model that is not in its checkpoint.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from vmas_lightning.errors import VMASError
from vmas_lightning.models.pretrained import from_pretrained, load_hf_model
from vmas_lightning.registry import TEXT_CONDITIONERS

HOW = "get t5-base with `hf download t5-base --local-dir DIR` and set model.text.pretrained to DIR"


class T5TextConditioner(nn.Module):
    """`conditioner(captions: list of B str) -> (features [B, max_tokens, d_model], mask bool [B, max_tokens])`;
    frozen (no gradients, always in eval mode)."""

    def __init__(self, encoder: nn.Module, tokenizer: Any, tokenizer_source: str, max_tokens: int):
        super().__init__()
        self.encoder = encoder.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.tokenizer_source = tokenizer_source
        self.max_tokens = max_tokens
        self.out_dim = encoder.config.d_model

    def train(self, mode: bool = True) -> "T5TextConditioner":
        return super().train(False)  # frozen: no dropout in training either

    @torch.no_grad()
    def forward(self, captions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(self.encoder.parameters()).device
        tokens = self.tokenizer(list(captions), padding="max_length", truncation=True, max_length=self.max_tokens,
                                return_tensors="pt").to(device)
        features = self.encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return features, tokens["attention_mask"].bool()

    def rebuild_options(self) -> dict:
        """Options of `t5` that build this network again without reading its weights (a checkpoint holds
        them); the tokenizer is read again from its source."""
        return {"pretrained": None, "config": self.encoder.config.to_dict(), "tokenizer": self.tokenizer_source}


def load_tokenizer(source: str) -> Any:
    from transformers import AutoTokenizer

    return from_pretrained(AutoTokenizer.from_pretrained, source, "the T5 tokenizer (model.text.tokenizer)", HOW)


@TEXT_CONDITIONERS.register("t5")
def t5(pretrained: Optional[str] = "t5-base", tokenizer: Optional[str] = None, max_tokens: int = 64,
       config: Optional[dict] = None) -> T5TextConditioner:
    """Frozen T5 encoder from `pretrained` (hub id or local folder holding a T5 model and its tokenizer);
    `tokenizer`: another source of the tokenizer (default: `pretrained`'s). `config` (a `T5Config` dict, as a
    checkpoint records it) builds the encoder untrained, for a checkpoint's weights to fill; the tokenizer is
    then read from `tokenizer`."""
    from transformers import T5Config, T5EncoderModel

    if max_tokens < 1:
        raise VMASError(f"t5: max_tokens must be >= 1, got {max_tokens}")
    tokenizer_source = tokenizer or pretrained
    if tokenizer_source is None:
        raise VMASError(f"t5: neither pretrained nor tokenizer names where the tokenizer is; {HOW}")
    if config is not None:
        encoder = T5EncoderModel(T5Config.from_dict(config))
    elif pretrained:
        encoder = load_hf_model({"t5": T5EncoderModel}, pretrained, "a T5 text encoder (model.text.pretrained)", HOW)
    else:
        raise VMASError(f"t5: the frozen encoder needs its weights; {HOW}")
    return T5TextConditioner(encoder, load_tokenizer(tokenizer_source), tokenizer_source, max_tokens)
