"""Per-frame CLIP ViT image features (the paper's CLIP baseline: ViT on 16 of 96 frames)."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import timm
import torch
from torch import nn

from vmas_lightning.errors import MissingWeightsError, VMASError
from vmas_lightning.models.pretrained import hub_reachable
from vmas_lightning.registry import VIDEO_ENCODERS

CLIP_HOW = (
    "on a connected machine run torch.save(timm.create_model(NAME, pretrained=True, num_classes=0).state_dict(), FILE) "
    "and set model.encoder.pretrained to FILE"
)

CLIP_SIZES = {
    "base": {},
    "tiny": dict(embed_dim=32, depth=2, num_heads=2),  # CPU tests and demos
}


class ClipFrameEncoder(nn.Module):
    """`forward(video [B, 3, F, H, W] in [0, 1]) -> [B, F // frames_per_feature, out_dim]`: the
    ViT's pooled image feature of every `frames_per_feature`-th frame."""

    def __init__(self, vit: nn.Module, frames_per_feature: int):
        super().__init__()
        self.vit = vit
        self.frames_per_feature = frames_per_feature
        self.out_dim = vit.num_features
        cfg = vit.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)

    def rebuild_options(self) -> dict:
        """Options of `clip` that build this network again without its weights source (checkpoints record them)."""
        return {"pretrained": None}

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        batch, _, num_frames = video.shape[:3]
        steps = num_frames // self.frames_per_feature
        frames = video[:, :, : steps * self.frames_per_feature : self.frames_per_feature]  # [B, 3, S, H, W]
        frames = frames.transpose(1, 2).flatten(0, 1)  # [B * S, 3, H, W]
        return self.vit((frames - self.mean) / self.std).view(batch, steps, -1)


@VIDEO_ENCODERS.register("clip")
def clip(
    model: str = "vit_base_patch32_clip_224.openai",
    size: str = "base",
    num_frames: int = 96,
    frame_size: int = 224,
    frames_per_feature: int = 6,
    pretrained: Union[bool, str, None] = None,
    freeze: bool = False,
) -> ClipFrameEncoder:
    """CLIP ViT per frame.

    Args:
        model: timm name with pretrained tag: `vit_base_patch32_clip_224.openai` (paper's 140 GFLOPs
            at 16 frames) or `vit_base_patch16_clip_224.openai`.
        size: `base` (the named architecture) or `tiny` (same family, width 32, depth 2).
        frames_per_feature: one feature every this many frames (6: 16 of 96 frames).
        pretrained: True for timm's hub weights of `model`, or a local file (timm-format state
            dict of the same architecture); None/False for random weights.
    """
    if size not in CLIP_SIZES:
        raise VMASError(f"clip: unknown size '{size}'; known: {', '.join(CLIP_SIZES)}")
    if num_frames % frames_per_feature:
        raise VMASError(f"clip: num_frames {num_frames} is not a multiple of frames_per_feature {frames_per_feature}")
    kwargs = dict(num_classes=0, img_size=frame_size, **CLIP_SIZES[size])
    if isinstance(pretrained, str):
        kwargs["pretrained_cfg_overlay"] = dict(file=pretrained)
        if not Path(pretrained).expanduser().is_file():
            raise MissingWeightsError("CLIP encoder (model.encoder.pretrained)", pretrained, CLIP_HOW)
    if pretrained is True and not hub_reachable():
        raise MissingWeightsError("CLIP encoder (model.encoder.pretrained)", f"{model} (hub unreachable)", CLIP_HOW)
    try:
        vit = timm.create_model(model, pretrained=bool(pretrained), **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise VMASError(f"clip: unknown timm model '{model}'") from exc
        raise
    except (OSError, ValueError) as exc:  # hub unreachable / no such weights
        raise MissingWeightsError("CLIP encoder (model.encoder.pretrained)", model, CLIP_HOW) from exc
    if freeze:
        vit.requires_grad_(False)
    return ClipFrameEncoder(vit, frames_per_feature)
