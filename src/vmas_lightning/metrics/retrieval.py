"""Video <-> music retrieval Recall@K over all evaluated clips (paper appendix: 2,000 test clips).

Clip i's video feature should retrieve clip i's music feature among all music features (and the
reverse), ranked by cosine similarity. Ties count against the query: the rank of the right item is
the number of *other* items scoring at least as high, so constant features give Recall 0, not 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def recall_at_k(similarity: torch.Tensor, ks: tuple[int, ...]) -> dict[int, torch.Tensor]:
    """`similarity [Q, Q]` with the right answers on the diagonal -> `{k: Recall@k}`."""
    correct = similarity.diagonal()[:, None]
    others = ~torch.eye(similarity.shape[0], dtype=torch.bool, device=similarity.device)
    ranks = ((similarity >= correct) & others).sum(dim=1)  # 0 = retrieved first
    return {k: (ranks < k).double().mean() for k in ks}


class RetrievalRecall(Metric):
    """`recall@K` (video -> music) and `recall_m2v@K` (music -> video) for K in `ks`."""

    full_state_update = False

    def __init__(self, ks: tuple[int, ...] = (1, 10), **kwargs):
        super().__init__(**kwargs)
        self.ks = tuple(ks)
        self.add_state("video_features", default=[], dist_reduce_fx="cat")
        self.add_state("music_features", default=[], dist_reduce_fx="cat")

    def update(self, video_features: torch.Tensor, music_features: torch.Tensor) -> None:
        """Pooled features `[B, D]` of the same clips, row b of both from clip b."""
        if video_features.shape[0] != music_features.shape[0]:
            raise ValueError(f"{video_features.shape[0]} video features for {music_features.shape[0]} music features")
        if video_features.shape[-1] != music_features.shape[-1]:
            raise ValueError(
                f"video features of dim {video_features.shape[-1]} and music features of dim "
                f"{music_features.shape[-1]}: project both to the shared (contrastive) space first"
            )
        self.video_features.append(video_features.detach().double())
        self.music_features.append(music_features.detach().double())

    def compute(self) -> dict[str, torch.Tensor]:
        video = F.normalize(dim_zero_cat(self.video_features), dim=-1)
        music = F.normalize(dim_zero_cat(self.music_features), dim=-1)
        similarity = video @ music.T
        out = {f"recall@{k}": v for k, v in recall_at_k(similarity, self.ks).items()}
        out.update({f"recall_m2v@{k}": v for k, v in recall_at_k(similarity.T, self.ks).items()})
        return out
