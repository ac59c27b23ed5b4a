"""Hiera video encoders on timm's `Hiera`, with one Q-pooling stride per stage.

`hiera` is Hiera-B for video (official 16x224 geometry: patch kernel (3, 7, 7), stride (2, 4, 4),
Q-pooling (1, 2, 2) at the three stage transitions, 8x8 mask units). `efficient_hiera` is the VMAs
encoder: the same network with Q-pooling strides (1, 4, 4), (1, 7, 7), (1, 2, 2), which pool a
224x224 frame (56x56 tokens) down to 1x1, so 96x224x224 input gives `[B, 48, 768]`.

timm's `Hiera` takes one `q_stride` for every stage; `HieraVideoEncoder` builds it and then gives
each stage its own stride by replacing the token order (`Unroll` / `Reroll` with the per-stage
schedule) and each block's `attn.q_stride` / `attn.window_size` / `attn.use_mask_unit_attn`.

Mask units: `MaskUnitAttention` attends within groups of tokens that share the trailing index of the
unrolled order, so a window is only a real spatial neighbourhood when it spans a product of leading
unroll strides. With strides 4, 7, 2 an 8x8 unit is impossible (8 does not divide 4 * 7), so the
efficient encoder's stage-`s` mask unit is the region the next Q-pool merges: 4x4 tokens in stage 0,
28x28 (7x7 stage-1 tokens) in stage 1. The paper does not say; this keeps attention local and cheap.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from timm.models.hiera import Hiera, Reroll, Unroll, checkpoint_filter_fn

from vmas_lightning.errors import VMASError
from vmas_lightning.models.pretrained import check_state_dict, load_checkpoint_file
from vmas_lightning.registry import VIDEO_ENCODERS

Stride = tuple[int, int, int]

HIERA_SIZES = {
    "base": dict(embed_dim=96, num_heads=1, stages=(2, 3, 16, 3)),
    "tiny": dict(embed_dim=16, num_heads=1, stages=(1, 1, 1, 1)),  # CPU tests and demos
}
HIERA_Q_STRIDES: tuple[Stride, ...] = ((1, 2, 2),) * 3
HIERA_MASK_UNITS: tuple[Stride, ...] = ((1, 8, 8),) * 2  # official: (1, 8, 8), stages 0-1
EFFICIENT_Q_STRIDES: tuple[Stride, ...] = ((1, 4, 4), (1, 7, 7), (1, 2, 2))
PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING = (3, 7, 7), (2, 4, 4), (1, 3, 3)
# Kinetics normalisation of the official Hiera video checkpoints (MAE-ST / PySlowFast recipe).
KINETICS_MEAN, KINETICS_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
HIERA_B_16X224_URL = "https://dl.fbaipublicfiles.com/hiera/hiera_base_16x224.pth"


def _prod(strides: Sequence[Stride]) -> Stride:
    return tuple(math.prod(s[d] for s in strides) for d in range(3))  # type: ignore[return-value]


def _div(a: Sequence[int], b: Sequence[int], what: str) -> Stride:
    if any(x % y for x, y in zip(a, b)):
        raise VMASError(f"hiera: {what} {tuple(a)} is not divisible by {tuple(b)}")
    return tuple(x // y for x, y in zip(a, b))  # type: ignore[return-value]


class HieraVideoEncoder(Hiera):
    """Hiera for video with per-stage Q-pooling strides; `forward(video [B, 3, F, H, W] in [0, 1])
    -> features [B, F / frames_per_feature, out_dim]` (final-stage tokens averaged over space).

    Args:
        num_frames, frame_size: input geometry (positional embeddings are sized for it).
        embed_dim, num_heads, stages: Hiera size (see `HIERA_SIZES`).
        q_strides: one (t, h, w) Q-pooling stride per stage transition.
        mask_units: (t, h, w) mask unit in stage-0 tokens for each stage that uses mask-unit
            attention (the others attend globally); each must span whole leading unroll strides.
    """

    def __init__(
        self,
        num_frames: int,
        frame_size: int,
        embed_dim: int,
        num_heads: int,
        stages: Sequence[int],
        q_strides: Sequence[Stride],
        mask_units: Sequence[Stride],
    ):
        q_strides = [tuple(s) for s in q_strides]
        mask_units = [tuple(m) for m in mask_units]
        if len(q_strides) >= len(stages) or len(mask_units) > len(stages):
            raise VMASError(f"hiera: {len(stages)} stages take at most {len(stages) - 1} q_strides")
        input_size = (num_frames, frame_size, frame_size)
        tokens = _div(input_size, PATCH_STRIDE, "input (frames, height, width)")
        output_grid = _div(tokens, _prod(q_strides), f"token grid for q_strides {q_strides}")
        super().__init__(
            img_size=input_size,
            embed_dim=embed_dim,
            num_heads=num_heads,
            num_classes=0,
            stages=tuple(stages),
            q_pool=len(q_strides),
            q_stride=q_strides[0],
            mask_unit_size=mask_units[0] if mask_units else (1, 1, 1),
            mask_unit_attn=tuple(s < len(mask_units) for s in range(len(stages))),
            patch_kernel=PATCH_KERNEL,
            patch_stride=PATCH_STRIDE,
            patch_padding=PATCH_PADDING,
            sep_pos_embed=True,
        )
        self.q_stride = q_strides
        self.unroll = Unroll(input_size, PATCH_STRIDE, q_strides)
        self.reroll = Reroll(input_size, PATCH_STRIDE, q_strides, self.stage_ends, len(q_strides))
        windows = [self._window(s, mask_units[s], q_strides) for s in range(len(mask_units))]
        # timm's Hiera takes one q_stride for all stages and offers no per-stage option, so each block's
        # attention is set after construction: `MaskUnitAttention` keeps these constructor arguments
        # as public attributes read only in `forward`, and no parameter's shape depends on them.
        stage = 0
        for i, block in enumerate(self.blocks):
            pools = i - 1 in self.stage_ends[: len(q_strides)]
            if i - 1 in self.stage_ends:
                stage += 1
            # A pooling block attends within the previous stage's units (timm/official "lag by 1").
            unit_stage = stage - 1 if pools else stage
            block.attn.q_stride = math.prod(q_strides[stage - 1]) if pools else 1
            block.attn.use_mask_unit_attn = unit_stage < len(mask_units)
            block.attn.window_size = (
                math.prod(windows[unit_stage]) // block.attn.q_stride if block.attn.use_mask_unit_attn else 0
            )
        self.output_grid = output_grid
        self.frames_per_feature = PATCH_STRIDE[0] * _prod(q_strides)[0]
        self.out_dim = self.num_features
        self.register_buffer("mean", torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1), persistent=False)

    @staticmethod
    def _window(stage: int, unit: Stride, q_strides: Sequence[Stride]) -> Stride:
        """Stage-`stage` tokens per mask unit; must equal a product of the next unroll strides."""
        window = _div(unit, _prod(q_strides[:stage]), f"stage {stage} mask unit")
        products = [_prod(q_strides[stage:stage + n]) for n in range(len(q_strides) - stage + 1)]
        # A pooling block at the end of the stage attends within the unit, so it must hold the Q-pool.
        needed = 1 if stage < len(q_strides) else 0
        if window not in products[needed:]:
            raise VMASError(
                f"hiera: mask unit {unit} of stage {stage} is not a whole Q-pooling region; "
                f"in stage-0 tokens use one of {[_prod(q_strides[:stage + n]) for n in range(needed, len(products))]}"
            )
        return window

    def checkpoint_units(self) -> list[torch.nn.Module]:
        """The modules `enable_activation_checkpointing` recomputes: the blocks."""
        return list(self.blocks)

    def enable_activation_checkpointing(self) -> None:
        """Recompute each block in backward (timm's non-reentrant checkpoint)."""
        self.set_grad_checkpointing(True)

    def rebuild_options(self) -> dict:
        """Options of `hiera` / `efficient_hiera` that build this network again without its weights
        source (checkpoints record them)."""
        return {"pretrained": None}

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, F, H, W] in [0, 1] -> [B, F / frames_per_feature, out_dim]."""
        x = self.forward_features((video - self.mean) / self.std)  # [B, t * h * w, D], spatial order
        t, h, w = self.output_grid
        x = x.view(x.shape[0], t, h * w, x.shape[-1]).mean(dim=2)
        return self.head.norm(x)


def resize_pos_embed(state_dict: dict[str, torch.Tensor], model: HieraVideoEncoder) -> dict[str, torch.Tensor]:
    """Interpolate the separable positional embeddings to the model's token grid
    (temporal: linear, e.g. 8 -> 48 steps for 96 frames; spatial: bicubic)."""
    t, h, w = model.tokens_spatial_shape
    out = dict(state_dict)
    temporal = state_dict.get("pos_embed_temporal")  # [1, T0, D]; absent from image checkpoints
    if temporal is not None and temporal.shape[1] != t:
        out["pos_embed_temporal"] = F.interpolate(
            temporal.transpose(1, 2), size=t, mode="linear", align_corners=False
        ).transpose(1, 2)
    spatial = state_dict.get("pos_embed_spatial")  # [1, H0 * W0, D]
    if spatial is not None and spatial.shape[1] != h * w:
        side = math.isqrt(spatial.shape[1])
        grid = spatial.transpose(1, 2).reshape(1, -1, side, side)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        out["pos_embed_spatial"] = grid.flatten(2).transpose(1, 2)
    return out


def load_hiera_checkpoint(model: HieraVideoEncoder, source: str) -> None:
    """Load an official Hiera video checkpoint (`{"model_state": ...}`, official key names) or a
    timm-format state dict from a local path or URL; the classifier head is dropped. Another size
    (e.g. Hiera-B+) or an image Hiera is refused in one line."""
    how = f"download {HIERA_B_16X224_URL} and set model.encoder.pretrained to its local path"
    state = checkpoint_filter_fn(load_checkpoint_file(source, "Hiera video encoder (model.encoder.pretrained)", how))
    state = resize_pos_embed({k: v for k, v in state.items() if not k.startswith("head.fc.")}, model)
    check_state_dict(model, state, source, f"a Hiera video checkpoint for {type(model).__name__}", how)
    model.load_state_dict(state)


def _build(
    q_strides: Sequence[Stride],
    mask_units: Sequence[Stride],
    size: str,
    num_frames: int,
    frame_size: int,
    pretrained: Optional[str],
    freeze: bool,
) -> HieraVideoEncoder:
    if size not in HIERA_SIZES:
        raise VMASError(f"hiera: unknown size '{size}'; known: {', '.join(HIERA_SIZES)}")
    model = HieraVideoEncoder(num_frames, frame_size, q_strides=q_strides, mask_units=mask_units, **HIERA_SIZES[size])
    if pretrained:
        load_hiera_checkpoint(model, pretrained)
    if freeze:
        model.requires_grad_(False)
    return model


@VIDEO_ENCODERS.register("hiera")
def hiera(
    size: str = "base",
    num_frames: int = 96,
    frame_size: int = 224,
    pretrained: Optional[str] = None,
    freeze: bool = False,
    q_strides: Optional[Sequence[Stride]] = None,
    mask_units: Optional[Sequence[Stride]] = None,
) -> HieraVideoEncoder:
    """Hiera-B video (official strides (1, 2, 2) x 3, 8x8 mask units); `pretrained`: path or URL of
    the official Hiera-B 16x224 video checkpoint (positional embeddings resized to the input)."""
    return _build(
        q_strides or HIERA_Q_STRIDES, mask_units or HIERA_MASK_UNITS, size, num_frames, frame_size, pretrained, freeze
    )


@VIDEO_ENCODERS.register("efficient_hiera")
def efficient_hiera(
    size: str = "base",
    num_frames: int = 96,
    frame_size: int = 224,
    pretrained: Optional[str] = None,
    freeze: bool = False,
    q_strides: Optional[Sequence[Stride]] = None,
    mask_units: Optional[Sequence[Stride]] = None,
) -> HieraVideoEncoder:
    """The VMAs encoder: Q-pooling (1, 4, 4), (1, 7, 7), (1, 2, 2) pools a 224x224 frame to one token.

    For other frame sizes give `q_strides` whose product is the token grid (frame_size / 4), e.g.
    [[1, 4, 4], [1, 2, 2], [1, 2, 2]] at 64x64. Mask units default to the region each stage's
    Q-pool merges (see the module docstring).
    """
    q_strides = q_strides or EFFICIENT_Q_STRIDES
    if mask_units is None:
        mask_units = [_prod(q_strides[:1]), _prod(q_strides[:2])]
    return _build(q_strides, mask_units, size, num_frames, frame_size, pretrained, freeze)
