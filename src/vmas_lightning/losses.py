"""Training losses: the beat-weighted autoregressive cross-entropy (Eq. 3-4) and the video-music
contrastive loss (Eq. 2)."""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from vmas_lightning.errors import VMASError

# CLIP's cap on the learned inverse temperature (a temperature of at least 0.01).
MAX_LOGIT_SCALE = math.log(100.0)


def token_cross_entropy(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Per-token next-token loss: `logits [B, K, T, V]`, int64 `tokens [B, K, T]` -> `[B, K, T]`."""
    return F.cross_entropy(logits.flatten(0, 2), tokens.flatten(), reduction="none").view(tokens.shape)


def weighted_cross_entropy(logits: torch.Tensor, tokens: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Beat-weighted next-token loss in the un-delayed frame.

    Args:
        logits: `[B, K, T, V]`, `logits[:, k, t]` predicts `tokens[:, k, t]`.
        tokens: int64 `[B, K, T]`.
        weights: `[B, T]` per-step weights w_t, shared by the K codebooks of a step.

    Returns:
        sum_{b,k,t} w_bt * CE_bkt / (K * sum_{b,t} w_bt): a weighted mean, so its scale does not depend
        on how many beats a batch has, and equal weights give the plain mean cross-entropy.
    """
    per_token = token_cross_entropy(logits, tokens)
    weights = weights.to(per_token.dtype)
    return (per_token * weights[:, None, :]).sum() / (weights.sum() * tokens.shape[1])


class BeatWeightedCrossEntropy(nn.Module):
    """The autoregressive loss of Eq. 3-4, fed by the data's `overlap` (o_t = 1 where a music beat
    falls within the match window of a video beat, `beats.overlap`): each step weighted
    w_t = o_t + lambda (`weighted_cross_entropy`), or the plain mean cross-entropy without beat
    weighting (the AR baseline). `model.loss.beat_weighting` and `model.loss.beat_lambda`.
    """

    def __init__(self, beat_weighting: bool = True, beat_lambda: float = 1.0):
        super().__init__()
        self.beat_weighting, self.beat_lambda = beat_weighting, beat_lambda

    def weights(self, overlap: torch.Tensor) -> torch.Tensor:
        """`[B, T]` step weights w_t from `overlap [B, T]`."""
        return overlap + self.beat_lambda if self.beat_weighting else torch.ones_like(overlap)

    def forward(self, logits: torch.Tensor, tokens: torch.Tensor, overlap: torch.Tensor) -> torch.Tensor:
        """`logits [B, K, T, V]`, int64 `tokens [B, K, T]`, `overlap [B, T]` -> the scalar loss."""
        return weighted_cross_entropy(logits, tokens, self.weights(overlap))


def soft_music_embedding(logits: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Music feature of Eq. 2: the expected codec latent under the predicted token distributions.

    Args:
        logits: `[B, K, T, V]` decoder logits (un-delayed).
        codebooks: `[K, V, Dc]` codec codebook vectors (frozen).

    Returns:
        `[B, Dc]`: sum over the K codebooks of softmax(logits_k) @ E_k (summed, not averaged, because
        residual quantisation reconstructs the latent as the sum of its codebooks' vectors), mean-pooled
        over the T steps.
    """
    probs = logits.softmax(dim=-1)
    per_step = torch.einsum("bktv,kvd->btd", probs, codebooks.to(probs.dtype))
    return per_step.mean(dim=1)


def token_music_embedding(tokens: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """The one-hot case of `soft_music_embedding`: reference `tokens [B, K, T]` -> `[B, Dc]`, the sum
    over the K codebooks of each token's codebook vector, mean-pooled over the T steps."""
    per_step = torch.stack([codebooks[k][tokens[:, k]] for k in range(tokens.shape[1])]).sum(0)  # [B, T, Dc]
    return per_step.mean(dim=1)


class ContrastiveLoss(nn.Module):
    """Symmetric InfoNCE between clip-level music and video features (cosine similarity / temperature).

    Args:
        music_dim, video_dim: input feature sizes (Dm, Dv).
        embed_dim: size of the learned linear projections to a shared space; None: no projection
            (then Dm must equal Dv).
        temperature: initial (or fixed) softmax temperature.
        learnable_temperature: learn log(1 / temperature) (capped at a temperature of 0.01, as CLIP).
        gather: "local" uses the other clips of this device's batch as negatives; "global" gathers
            every rank's features under torch.distributed (gradients reach each rank's own part),
            so negatives come from the whole global batch.
    """

    def __init__(
        self,
        music_dim: int,
        video_dim: int,
        embed_dim: Optional[int] = None,
        temperature: float = 0.07,
        learnable_temperature: bool = True,
        gather: str = "local",
    ):
        super().__init__()
        if gather not in ("local", "global"):
            raise VMASError(f"contrastive loss: gather must be 'local' or 'global', got '{gather}'")
        if embed_dim is None and music_dim != video_dim:
            raise VMASError(
                f"contrastive loss: music ({music_dim}) and video ({video_dim}) feature sizes differ; set embed_dim"
            )
        if temperature <= 0:
            raise VMASError(f"contrastive loss: temperature must be > 0, got {temperature}")
        self.gather = gather
        self.music_proj = nn.Linear(music_dim, embed_dim, bias=False) if embed_dim else nn.Identity()
        self.video_proj = nn.Linear(video_dim, embed_dim, bias=False) if embed_dim else nn.Identity()
        logit_scale = torch.tensor([math.log(1.0 / temperature)])  # 1-D: FSDP2 shards no 0-d parameter
        if learnable_temperature:
            self.logit_scale = nn.Parameter(logit_scale)
        else:
            self.register_buffer("logit_scale", logit_scale)
        self.register_load_state_dict_pre_hook(_scalar_logit_scale_to_1d)

    def embed(self, music: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip features `music [B, Dm]`, `video [B, Dv]` -> their projections to the shared space,
        L2-normalised, float32 `[B, E]` each: what the loss compares and what retrieval ranks."""
        return F.normalize(self.music_proj(music).float(), dim=-1), F.normalize(self.video_proj(video).float(), dim=-1)

    def forward(self, music: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`music [B, Dm]`, `video [B, Dv]` (row i of each from the same clip) -> (loss, top-1 accuracy
        of video -> music retrieval among the candidates), both scalars."""
        music, video = self.embed(music, video)
        all_music, all_video, offset = music, video, 0
        if self.gather == "global" and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dim = music.shape[-1]
            gathered, offset = gather_with_grad(torch.cat([music, video], dim=-1))
            all_music, all_video = gathered[:, :dim], gathered[:, dim:]
        scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        labels = torch.arange(music.shape[0], device=music.device) + offset
        video_to_music = scale * video @ all_music.T
        music_to_video = scale * music @ all_video.T
        loss = (F.cross_entropy(video_to_music, labels) + F.cross_entropy(music_to_video, labels)) / 2
        top1 = (video_to_music.argmax(dim=-1) == labels).float().mean()
        return loss, top1


def _scalar_logit_scale_to_1d(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Checkpoints written before `logit_scale` became 1-D hold it as a 0-d tensor."""
    key = prefix + "logit_scale"
    if key in state_dict and state_dict[key].ndim == 0:
        state_dict[key] = state_dict[key].reshape(1)


class _AllGather(torch.autograd.Function):
    """`[B, D]` of equal shape on every rank -> `[world * B, D]`; backward sums every rank's gradient of
    the gathered rows and keeps this rank's. `torch.distributed.nn.functional.all_gather` does this
    but is deprecated for `torch.distributed._functional_collectives` (private); this uses public
    collectives only."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        ctx.rows = local.shape[0]
        out = local.new_empty((dist.get_world_size() * ctx.rows, *local.shape[1:]))
        dist.all_gather_into_tensor(out, local.contiguous())
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start : start + ctx.rows]


def gather_with_grad(local: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate every rank's `[B_r, D]` (batch sizes may differ) -> (`[sum B_r, D]`, offset of this
    rank's rows). Differentiable: each rank's rows get the gradients of every rank's loss."""
    world, rank = dist.get_world_size(), dist.get_rank()
    size = torch.tensor([local.shape[0]], device=local.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    padded = F.pad(local, (0, 0, 0, max(sizes) - local.shape[0]))
    parts = _AllGather.apply(padded).split(max(sizes))
    return torch.cat([part[:n] for part, n in zip(parts, sizes)]), sum(sizes[:rank])
