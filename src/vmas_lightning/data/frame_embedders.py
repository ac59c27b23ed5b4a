"""Frame embedders for the visual-variety filter of curation (SPEC section 1, filter 1).

A video is kept when the mean pairwise cosine similarity of its sampled frames' embeddings is
below a threshold (0.7 in the paper, with CLIP embeddings; DISCO-10M averages 0.91).
"""
from __future__ import annotations

from typing import Union

import cv2
import numpy as np
import torch

from vmas_lightning.registry import FRAME_EMBEDDERS


@FRAME_EMBEDDERS.register("pixel_stats")
def pixel_stats(thumbnail: int = 16):
    """A cheap embedder needing no weights: each frame's `thumbnail x thumbnail` RGB miniature,
    centred on mid-grey, so different pictures point in different directions. Its similarities are
    not calibrated to CLIP's: check the threshold on a few of your own videos."""

    def embed(frames: np.ndarray) -> np.ndarray:
        """uint8 `[N, H, W, 3]` -> float32 `[N, thumbnail * thumbnail * 3]`."""
        small = [cv2.resize(f, (thumbnail, thumbnail), interpolation=cv2.INTER_AREA) for f in frames]
        return (np.stack(small).reshape(len(frames), -1).astype(np.float32) / 127.5) - 1.0

    return embed


@FRAME_EMBEDDERS.register("clip")
def clip_frames(model: str = "vit_base_patch32_clip_224.openai", pretrained: Union[bool, str] = True,
                size: str = "base", batch_size: int = 16):
    """CLIP image embeddings (the paper's filter), on the `clip` video encoder's loading path
    (`pretrained`: True for the hub weights or a timm state-dict file; `size`: `base` or `tiny`)."""
    from vmas_lightning.models.encoders.clip import clip

    encoder = clip(model=model, size=size, num_frames=1, frame_size=224, frames_per_feature=1, pretrained=pretrained).eval()

    @torch.no_grad()
    def embed(frames: np.ndarray) -> np.ndarray:
        from vmas_lightning.video_io import resize_center_crop

        out = []
        for i in range(0, len(frames), batch_size):
            chunk = np.stack([resize_center_crop(f, 224) for f in frames[i : i + batch_size]])
            video = torch.from_numpy(chunk).permute(0, 3, 1, 2)[:, :, None].float() / 255.0  # [n, 3, 1, H, W]
            out.append(encoder(video)[:, 0])
        return torch.cat(out).numpy()

    return embed


def frame_similarity(embeddings: np.ndarray) -> float:
    """Mean pairwise cosine similarity of `[N, D]` embeddings (pairs i != j); 1.0 for one frame."""
    if len(embeddings) < 2:
        return 1.0
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-8)
    sims = unit @ unit.T
    n = len(unit)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))
