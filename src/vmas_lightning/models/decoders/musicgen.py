"""MusicGen's transformer decoder (transformers `MusicgenForCausalLM`) conditioned on video.

The video features are projected to the decoder width and passed as `encoder_hidden_states`, so
every layer cross-attends to them (MusicGen's text conditioning path, with video instead of T5).
With `time_embedding`, each projected feature also gets the decoder's own sinusoidal position
embedding of the token step at its centre time, so a music step and the video feature of the same
moment share a position code that cross-attention can match (the paper leaves positions to the
encoder; docs/ARCHITECTURE.md). With `aligned_condition`, each decoder step's input also gets
(a second projection of) the video feature of its own time, added next to the position embedding:
the moment's video reaches the step directly instead of through attention that must first learn
to find it (in-attention conditioning, as in e.g. MMAudio's aligned features). `aligned_upsample`
r > 1 lets that projection give r sub-step features per video feature (a learned temporal upsampling,
as a sub-pixel convolution does in space), so a cue can sit at a finer time than the encoder's
feature rate (efficient Hiera: one feature per 2 frames; r = 2 reaches the frame rate).
`aligned_interpolation: linear` gives each step the linear interpolation of the two sub-step
features around its time (each sub-step feature read as the picture at its start), instead of
holding the latest one: a cut between two frames becomes a ramp whose mix tells the step where it
sits between them, as the paper resamples the flow to the token grid by linear interpolation.
"""
from __future__ import annotations

import math

from typing import Any, Literal, Optional, get_args

import torch
from torch import nn
from torch.distributed.tensor import DTensor
from transformers import MusicgenDecoderConfig, MusicgenForCausalLM, MusicgenForConditionalGeneration

from vmas_lightning.errors import VMASError
from vmas_lightning.models.decoders.static_cache import StaticMusicGenDecoder
from vmas_lightning.models.pretrained import load_hf_model
from vmas_lightning.registry import MUSIC_DECODERS

AlignedInterpolation = Literal["hold", "linear"]

# (layers, width, heads, ffn): MusicGen's small/medium/large and a tiny CPU preset.
MUSICGEN_SIZES = {
    "tiny": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, ffn_dim=256),
    "small": dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, ffn_dim=4096),
    "medium": dict(num_hidden_layers=48, hidden_size=1536, num_attention_heads=24, ffn_dim=6144),
    "large": dict(num_hidden_layers=48, hidden_size=2048, num_attention_heads=32, ffn_dim=8192),
}


def sinusoids(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """MusicGen's sinusoidal position embedding (`MusicgenSinusoidalPositionalEmbedding`: cosines,
    then sines) at real-valued `positions [S]` -> `[S, dim]`."""
    half = dim // 2
    frequencies = torch.exp(torch.arange(half, device=positions.device) * -(math.log(10000) / (half - 1)))
    angles = positions.float()[:, None] * frequencies[None]
    return torch.nn.functional.pad(torch.cat([angles.cos(), angles.sin()], dim=1), (0, dim % 2))


class MusicGenDecoder(nn.Module):
    """`forward(input_ids [B, K, L], cond [B, S, cond_dim], past_key_values=None, use_cache=False, text=None)
    -> (logits [B, K, L, V], past_key_values)`; `pad_token_id` (= BOS) is `V`. `text [B, L_text, width]`
    (a caption's memory, already at the decoder's width) is appended to the projected video in the
    cross-attention memory (`memory`); the aligned path stays the video's.

    Args:
        tokens_per_cond_step: token steps per conditioning step (50 Hz / 4.8 Hz for efficient Hiera).
        time_embedding: add the sinusoidal embedding of decoder position (s + 0.5) * tokens_per_cond_step - 0.5
            (the step whose token is centred on feature s) to projected feature s.
        aligned_condition: add `aligned_proj(cond)` `[B, S * r, width]` at sub-step
            u = floor(j * r / tokens_per_cond_step) to the input of decoder step j (step j predicts
            the first codebook's time step j).
        aligned_upsample: r, sub-step features per video feature in the aligned path (1: each step
            gets its feature's projection).
        aligned_interpolation: `hold` (step j gets sub-step u) or `linear` (step j gets
            (1 - f) * sub-step u + f * sub-step u + 1, with u + f = j * r / tokens_per_cond_step).
    """

    def __init__(self, lm: MusicgenForCausalLM, cond_dim: int, tokens_per_cond_step: float = 1.0,
                 time_embedding: bool = False, aligned_condition: bool = False, aligned_upsample: int = 1,
                 aligned_interpolation: AlignedInterpolation = "hold"):
        super().__init__()
        self.lm = lm
        config = lm.config
        self.width = config.hidden_size
        self.num_layers = config.num_hidden_layers
        self.pad_token_id = config.pad_token_id
        self.cond_proj = nn.Linear(cond_dim, self.width)
        self.tokens_per_cond_step = tokens_per_cond_step
        self.time_embedding = time_embedding
        if aligned_upsample < 1 or (aligned_upsample > 1 and not aligned_condition):
            raise VMASError(f"musicgen: aligned_upsample {aligned_upsample} needs aligned_condition: true and must be >= 1")
        if aligned_interpolation not in get_args(AlignedInterpolation) or (aligned_interpolation != "hold" and not aligned_condition):
            raise VMASError(f"musicgen: aligned_interpolation '{aligned_interpolation}' needs aligned_condition: true and must be "
                            f"one of {', '.join(get_args(AlignedInterpolation))}")
        self.aligned_upsample = aligned_upsample
        self.aligned_interpolation = aligned_interpolation
        self.aligned_proj = nn.Linear(cond_dim, self.width * aligned_upsample) if aligned_condition else None
        self._aligned: Optional[torch.Tensor] = None  # [B, S * r, width] during a forward call
        self._static_decoders: dict[tuple, StaticMusicGenDecoder] = {}  # a plain dict: not submodules, not saved
        if aligned_condition:  # its output is added to the token embeddings: [L, D] -> [B, L, D]
            lm.model.decoder.embed_positions.register_forward_hook(self._add_aligned_condition)

    def _add_aligned_condition(self, module: nn.Module, args: tuple, positions: torch.Tensor) -> torch.Tensor:
        """Forward hook of the position embedding (`args`: ids `[B, K, L]`, past length)."""
        length, past = args[0].shape[-1], (args[1] if len(args) > 1 else 0)
        steps = torch.arange(length, device=positions.device) + past
        return positions + self.aligned_condition(self._aligned, steps, self._aligned.shape[1] - 1)

    def aligned_features(self, cond: torch.Tensor) -> torch.Tensor:
        """The aligned path's sub-step features: `[B, S, cond_dim]` -> `[B, S * r, width]`."""
        return self.aligned_proj(cond).view(cond.shape[0], cond.shape[1] * self.aligned_upsample, self.width)

    def aligned_condition(self, aligned: torch.Tensor, steps: torch.Tensor, last: int | torch.Tensor) -> torch.Tensor:
        """What decoder steps `steps [L]` get added to their input: `[B, L, width]` from
        `aligned [B, >= last + 1, width]` (sub-steps past `last` are not the window's)."""
        sub_steps = steps * self.aligned_upsample / self.tokens_per_cond_step
        index = sub_steps.floor().long().clamp(max=last)
        if self.aligned_interpolation == "hold":
            return aligned[:, index]
        fraction = (sub_steps - index).clamp(0, 1).to(aligned.dtype)[:, None]
        following = (index + 1).clamp(max=last)
        return (1 - fraction) * aligned[:, index] + fraction * aligned[:, following]

    def project_condition(self, cond: torch.Tensor) -> torch.Tensor:
        """`[B, S, cond_dim]` -> `[B, S, width]`: the projection, plus the time embedding when on."""
        projected = self.cond_proj(cond)
        if self.time_embedding:
            steps = torch.arange(cond.shape[1], device=cond.device)
            positions = (steps + 0.5) * self.tokens_per_cond_step - 0.5
            projected = projected + sinusoids(positions, self.width).to(projected.dtype)
        return projected

    def memory(self, cond: torch.Tensor, text: Optional[torch.Tensor] = None) -> torch.Tensor:
        """What every layer cross-attends to: `project_condition(cond)` `[B, S, width]`, then `text`
        `[B, L_text, width]` when given -> `[B, S (+ L_text), width]`."""
        projected = self.project_condition(cond)
        return projected if text is None else torch.cat([projected, text.to(projected.dtype)], dim=1)

    def forward(
        self,
        input_ids: torch.Tensor,
        cond: torch.Tensor,
        past_key_values: Optional[Any] = None,
        use_cache: bool = False,
        text: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, Optional[Any]]:
        batch, codebooks, length = input_ids.shape
        if self.aligned_proj is not None:
            self._aligned = self.aligned_features(cond)
        try:
            out = self.lm(
                input_ids=input_ids.reshape(batch * codebooks, length),
                encoder_hidden_states=self.memory(cond, text),
                past_key_values=past_key_values,
                use_cache=use_cache,
            )
        finally:
            self._aligned = None
        return out.logits.view(batch, codebooks, length, -1), out.past_key_values

    def static_decoder(self, batch: int, max_length: int, max_cond: int,
                       dtype: Optional[torch.dtype] = None) -> "StaticMusicGenDecoder":
        """This decoder's fixed-shape decode steps with a preallocated cache (`StaticMusicGenDecoder`,
        computing in `dtype`, default the weights'), made once per shape, device and dtype and kept, so
        a captured or compiled step is reused by every later window and clip of that shape."""
        param = next(self.parameters())
        if isinstance(param, DTensor):  # FSDP shards: the cache's step reads whole weights
            raise VMASError("generation.static_cache reads the decoder's whole weights, which FSDP shards; "
                            "use the dynamic cache (generation.static_cache false) under FSDP")
        key = (batch, max_length, max_cond, param.device, dtype or param.dtype)
        if key not in self._static_decoders:
            self._static_decoders.clear()  # one shape at a time: each holds a whole window's cache
            self._static_decoders[key] = StaticMusicGenDecoder(self, batch, max_length, max_cond, dtype)
        return self._static_decoders[key]

    def release_static_decoders(self) -> None:
        """Drop the kept static caches (their memory; a later window makes them again)."""
        self._static_decoders.clear()

    def checkpoint_units(self) -> list[nn.Module]:
        """The modules `enable_activation_checkpointing` recomputes: the decoder layers."""
        return list(self.lm.model.decoder.layers)

    def enable_activation_checkpointing(self) -> None:
        """Recompute each decoder layer in backward (transformers' non-reentrant activation checkpointing)."""
        if hasattr(self.lm, "activation_checkpointing_enable"):
            self.lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # transformers before the rename (5.17 has only the old name; later 5.x warn on it)
            self.lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    def rebuild_options(self) -> dict:
        """Options of `musicgen` that build this network again without its weights source (checkpoints record them)."""
        return {"pretrained": None, "config": self.lm.config.to_dict()}


def load_musicgen_lm(source: str) -> MusicgenForCausalLM:
    """MusicGen's decoder from a hub id or local folder holding either the full
    `MusicgenForConditionalGeneration` (e.g. facebook/musicgen-medium) or a `MusicgenForCausalLM`."""
    how = "get facebook/musicgen-medium with `hf download facebook/musicgen-medium --local-dir DIR` and set that key to DIR"
    classes = {"musicgen": MusicgenForConditionalGeneration, "musicgen_decoder": MusicgenForCausalLM}
    model = load_hf_model(classes, source, "MusicGen decoder (model.decoder.pretrained)", how)
    return model.decoder if isinstance(model, MusicgenForConditionalGeneration) else model


@MUSIC_DECODERS.register("musicgen")
def musicgen(
    num_codebooks: int,
    codebook_size: int,
    cond_dim: int,
    tokens_per_cond_step: float = 1.0,
    size: str = "medium",
    pretrained: Optional[str] = None,
    num_layers: Optional[int] = None,
    width: Optional[int] = None,
    num_heads: Optional[int] = None,
    ffn_dim: Optional[int] = None,
    dropout: float = 0.1,
    max_positions: int = 2048,
    time_embedding: bool = False,
    aligned_condition: bool = False,
    aligned_upsample: int = 1,
    aligned_interpolation: AlignedInterpolation = "hold",
    config: Optional[dict] = None,
) -> MusicGenDecoder:
    """MusicGen decoder; `pretrained` (hub id or local folder, e.g. facebook/musicgen-medium) sets
    the size and weights, otherwise `size` (tiny/small/medium/large) and the explicit overrides do.
    `config` (a `MusicgenDecoderConfig` dict, as a checkpoint records it) builds that network
    untrained, for a checkpoint's weights to fill.

    The cond projection is always new (MusicGen's projects T5 text features). `time_embedding`: add
    each video feature's time as the decoder's sinusoidal position; `aligned_condition`: add each
    step's own-time video feature to its input, `aligned_upsample` of them per video feature, held or
    linearly interpolated between sub-steps (`aligned_interpolation`; see `MusicGenDecoder`)."""
    if pretrained or config is not None:
        lm = MusicgenForCausalLM(MusicgenDecoderConfig.from_dict(config)) if config is not None else load_musicgen_lm(pretrained)
        got = (lm.config.num_codebooks, lm.config.vocab_size)
        if got != (num_codebooks, codebook_size):
            raise VMASError(
                f"{pretrained or 'decoder config'}: decoder has {got[0]} codebooks of {got[1]}, "
                f"codec has {num_codebooks} of {codebook_size}"
            )
        return MusicGenDecoder(lm, cond_dim, tokens_per_cond_step, time_embedding, aligned_condition, aligned_upsample,
                               aligned_interpolation)
    if size not in MUSICGEN_SIZES:
        raise VMASError(f"musicgen: unknown size '{size}'; known: {', '.join(MUSICGEN_SIZES)}")
    dims = dict(MUSICGEN_SIZES[size])
    overrides = dict(num_hidden_layers=num_layers, hidden_size=width, num_attention_heads=num_heads, ffn_dim=ffn_dim)
    dims.update({k: v for k, v in overrides.items() if v is not None})
    config = MusicgenDecoderConfig(
        vocab_size=codebook_size,
        num_codebooks=num_codebooks,
        pad_token_id=codebook_size,
        bos_token_id=codebook_size,
        max_position_embeddings=max_positions,
        dropout=dropout,
        **dims,
    )
    return MusicGenDecoder(MusicgenForCausalLM(config), cond_dim, tokens_per_cond_step, time_embedding, aligned_condition,
                           aligned_upsample, aligned_interpolation)
