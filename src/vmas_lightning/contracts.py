"""What a plugin of each kind must offer: `typing.Protocol`s whose members `Registry.build` checks on what a
factory returns, so a third-party plugin missing a piece fails in one line when it is built, not deep
inside training. Shapes: docs/ARCHITECTURE.md ("Tensors between parts", "Plugins")."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: importing the registry imports no torch
    import torch


class VideoEncoder(Protocol):
    """`encoder(video float [B, 3, F, H, W] in [0, 1]) -> features [B, F // frames_per_feature, out_dim]`."""

    out_dim: int
    frames_per_feature: int

    def __call__(self, video: torch.Tensor) -> torch.Tensor: ...


class MusicDecoder(Protocol):
    """`decoder(input_ids [B, K, L], cond [B, S, cond_dim], past_key_values=None, use_cache=False, text=None)
    -> (logits [B, K, L, V], past_key_values)`; `pad_token_id` (= BOS) is V. `text [B, L_text, width]`, the
    text memory (`models.text_condition.TextCondition`), joins the video in what the decoder cross-attends to;
    a decoder for a model without text may leave it out."""

    width: int
    num_layers: int
    pad_token_id: int

    def __call__(self, input_ids: torch.Tensor, cond: torch.Tensor, past_key_values: Any = None,
                 use_cache: bool = False, text: Any = None) -> tuple[torch.Tensor, Any]: ...


class TextConditioner(Protocol):
    """`conditioner(captions: list of B str) -> (features [B, max_tokens, out_dim], mask bool [B, max_tokens])`:
    every caption padded to `max_tokens` (a fixed length: the decoder's cross-attention keeps one shape), `mask`
    True at real tokens."""

    out_dim: int
    max_tokens: int

    def __call__(self, captions: list) -> tuple: ...


class AudioCodec(Protocol):
    """Frozen: `encode(wav [B, 1, N]) -> tokens [B, K, T]`, `decode(tokens) -> wav [B, 1, N]`,
    `codebook_embeddings() -> [K, V, Dc]`."""

    sample_rate: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int

    def encode(self, wav: torch.Tensor) -> torch.Tensor: ...

    def decode(self, tokens: torch.Tensor) -> torch.Tensor: ...

    def codebook_embeddings(self) -> torch.Tensor: ...


class AudioEmbedder(Protocol):
    """FAD: `embedder(wav [B, C, N], sample_rate) -> embeddings [B, T, dim]` (metrics/embedders.py)."""

    name: str
    dim: int
    sample_rate: int
    calibrated: bool
    cache_key: str

    def __call__(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor: ...


class AudioClassifier(Protocol):
    """KL: `classifier(segments: list of 1-D tensors at sample_rate) -> logits [S, num_labels]`."""

    name: str
    sample_rate: int
    segment_seconds: float
    num_labels: int
    calibrated: bool

    def __call__(self, segments: list) -> torch.Tensor: ...


class Function(Protocol):
    """The function kinds: onset detectors, optical flows, frame embedders, source separators
    (their signatures: docs/ARCHITECTURE.md)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def missing_members(plugin: Any, contract: type) -> list[str]:
    """The members of `contract` (its annotated attributes and methods) that `plugin` lacks."""
    members = set(getattr(contract, "__annotations__", {})) | {
        name for name, value in vars(contract).items() if callable(value) and (name == "__call__" or not name.startswith("_"))}
    return sorted(name for name in members if not hasattr(plugin, name))
