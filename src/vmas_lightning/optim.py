"""Optimiser and learning-rate schedule (SPEC section 6: MusicGen's 32 kHz recipe)."""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional, Union

import torch
from torch import nn

from vmas_lightning.config import OptimConfig
from vmas_lightning.dadapt_adam import ForeachDAdaptAdam
from vmas_lightning.errors import VMASError

Params = Union[nn.Module, Iterable[tuple[str, nn.Parameter]], Iterable[nn.Parameter]]


def decays(name: Optional[str], param: nn.Parameter) -> bool:
    """Whether weight decay applies: only to matrices and kernels (>= 2 dims) named `*weight`, and not to
    2-D tables under a module whose name contains "emb" (token and position embeddings). Without a
    name (plain parameters) every tensor of >= 2 dims decays."""
    if param.ndim < 2:
        return False
    if name is None:
        return True
    *modules, leaf = name.split(".")
    if not leaf.endswith("weight"):
        return False  # a raw nn.Parameter: positional embedding, learned token, null condition, scale
    return not (param.ndim == 2 and any("emb" in module for module in modules))


def parameter_groups(params: Params, weight_decay: float, lr: float,
                     lr_scales: Optional[Mapping[str, float]] = None) -> list[dict[str, Any]]:
    """Trainable parameters (a module, `(name, param)` pairs or params) -> optimizer groups: decayed,
    then not decayed, at `lr`; then, for each name prefix of `lr_scales` that matches parameters, the
    same two groups at `lr * scale`."""
    items = params.named_parameters() if isinstance(params, nn.Module) else params
    scales = {"": 1.0, **(lr_scales or {})}
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {(prefix, d): [] for prefix in scales for d in (True, False)}
    for item in items:
        name, param = item if isinstance(item, tuple) else (None, item)
        if param.requires_grad:
            prefix = next((p for p in scales if p and name is not None and name.startswith(p)), "")
            groups[prefix, decays(name, param)].append(param)
    return [
        {"params": group, "weight_decay": weight_decay if decayed else 0.0, "lr": lr * scales[prefix]}
        for (prefix, decayed), group in groups.items()
        if group or not prefix
    ]


def build_optimizer(params: Params, cfg: OptimConfig, lr_scales: Optional[Mapping[str, float]] = None) -> torch.optim.Optimizer:
    """AdamW or D-Adapt Adam over `params` with weight decay on matrices only (see `decays`) and the
    learning-rate multipliers `lr_scales` (name prefix -> scale), run as `cfg.implementation` says."""
    groups = parameter_groups(params, cfg.weight_decay, cfg.lr, lr_scales)
    if not any(group["params"] for group in groups):
        raise VMASError("optim: the model has no trainable parameters")
    if cfg.optimizer == "adamw":
        kernels = {"for_loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[cfg.implementation]
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), **kernels)
    if cfg.implementation == "foreach":
        return ForeachDAdaptAdam(groups, lr=cfg.lr, betas=tuple(cfg.betas), decouple=True)
    from dadaptation import DAdaptAdam

    return DAdaptAdam(groups, lr=cfg.lr, betas=tuple(cfg.betas), decouple=True)


def check_shardable(cfg: OptimConfig) -> None:
    """One line when the optimizer cannot step FSDP2-sharded (DTensor) parameters: D-Adapt Adam
    flattens every parameter, and torch cannot flatten an unevenly sharded one."""
    if cfg.optimizer == "dadapt_adam":
        raise VMASError("model.optim.optimizer dadapt_adam does not run under FSDP2 (it flattens each parameter, and an "
                        "unevenly sharded one cannot be flattened): set model.optim.optimizer adamw and its model.optim.lr")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float) -> float:
    """LR factor at optimizer step `step` (0-based): (step + 1) / warmup during warmup, then a cosine
    from 1 at `warmup_steps` to `min_lr_ratio` at `total_steps`, constant after."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: Optional[float] = None) -> dict[str, Any]:
    """Linear warmup then cosine decay over `cfg.max_steps` (or `total_steps`, the trainer's
    `estimated_stepping_batches`), as a Lightning lr-scheduler config stepped every optimizer step."""
    total = cfg.max_steps if cfg.max_steps is not None else total_steps
    if total is None or not math.isfinite(total) or total <= 0:
        raise VMASError(
            f"optim: the number of training steps is unknown ({total}); set model.optim.max_steps or trainer.max_steps"
        )
    total = int(total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, cfg.warmup_steps, total, cfg.min_lr_ratio)
    )
    return {"scheduler": scheduler, "interval": "step", "frequency": 1}
