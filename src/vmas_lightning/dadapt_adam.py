"""D-Adapt Adam (Defazio & Mishchenko, 2023) with foreach kernels and no host synchronisation.

The `dadaptation` package's `DAdaptAdam` (MusicGen's optimizer, the paper's) loops over the
parameters and calls `.item()` twice per tensor to sum the adaptation statistics in Python: about
2,000 host synchronisations per step for the paper's ~1,000 tensors, each one stalling the GPU queue.
`ForeachDAdaptAdam` does the same arithmetic with foreach kernels over chunks of tensors and keeps
the step size `d` and the running numerator as 0-dim float64 tensors on the parameters' device, so
a step queues its kernels without waiting for any. Its state (`step`, `s`, `exp_avg`, `exp_avg_sq`
per parameter; `d`, `k`, `numerator_weighted`, ... per group) has the package's names, so either
class resumes the other's checkpoints; tests/test_optim.py checks that both take the same steps.

One difference, by design: a step in which every gradient is zero (D-Adapt's statistics are then
zero too) leaves the parameters and `d` unchanged, as the package does, but counts in `k`.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, Optional

import torch

# Tensors per foreach call are taken up to this many elements, so that the temporaries of a step
# (the denominators and their quotients, one float per element each) stay near 1 GiB.
CHUNK_ELEMENTS = 2**27


def _chunks(tensors: list[torch.Tensor], limit: int = CHUNK_ELEMENTS) -> Iterator[slice]:
    """Consecutive slices of `tensors` of at most `limit` elements each (a larger tensor alone)."""
    start, size = 0, 0
    for index, tensor in enumerate(tensors):
        if index > start and size + tensor.numel() > limit:
            yield slice(start, index)
            start, size = index, 0
        size += tensor.numel()
    if start < len(tensors):
        yield slice(start, len(tensors))


class ForeachDAdaptAdam(torch.optim.Optimizer):
    """`dadaptation.DAdaptAdam` (same arguments and defaults, `log_every` and `fsdp_in_use` aside: it
    logs nothing, and the data-parallel strategies here all-reduce gradients, so every rank adapts
    `d` alike).

    Args:
        params: parameters or groups; every group's `lr` is the largest `lr` or 0 (the package's rule;
            scale a group by its `layer_scale`).
        lr: multiplier of the adapted step size (1.0 as in MusicGen).
        betas, eps: Adam's.
        weight_decay: decay of the parameters, decoupled (`decouple`) or added to the gradient.
        decouple: AdamW-style decay.
        use_bias_correction: Adam's bias correction of the step.
        d0: initial step size estimate.
        growth_rate: largest factor by which `d` grows per step.
    """

    def __init__(self, params, lr: float = 1.0, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, decouple: bool = False, use_bias_correction: bool = False,
                 d0: float = 1e-6, growth_rate: float = float("inf")):
        if not (d0 > 0 and lr > 0 and eps > 0 and 0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"need d0, lr, eps > 0 and betas in [0, 1); got d0={d0}, lr={lr}, eps={eps}, betas={betas}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, d=d0, k=0, layer_scale=1.0,
                        numerator_weighted=0.0, growth_rate=growth_rate, use_bias_correction=use_bias_correction,
                        decouple=decouple)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        first = self.param_groups[0]
        lr = max(group["lr"] for group in self.param_groups)
        for group in self.param_groups:
            if group["lr"] not in (lr, 0.0):
                raise RuntimeError("D-Adapt Adam: every parameter group's lr must be the largest lr or 0; "
                                   "scale a group with its 'layer_scale'")
        live = [(group, [p for p in group["params"] if p.grad is not None]) for group in self.param_groups]
        if not any(params for _, params in live):
            return loss
        device = next(params[0].device for _, params in live if params)
        beta1, beta2 = first["betas"]
        sqrt_beta2 = beta2**0.5
        k = first["k"]
        bias_correction = ((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1)) if first["use_bias_correction"] else 1.0
        d = torch.as_tensor(first["d"], dtype=torch.float64, device=device)
        dlr = d * (lr * bias_correction)
        numerator = torch.zeros((), dtype=torch.float64, device=device)
        sk_l1 = torch.zeros((), dtype=torch.float64, device=device)

        for group, params in live:
            for p in params:
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                    state["s"] = torch.zeros_like(p)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
            if not params:
                continue
            grads = [p.grad for p in params]
            if group["weight_decay"] != 0 and not group["decouple"]:
                torch._foreach_add_(grads, params, alpha=group["weight_decay"])
            if group["lr"] == 0.0:
                continue
            r = group["layer_scale"]
            avg_scale = (dlr * (r * (1 - beta1))).float()  # the package's add_ alphas, rounded to float32 once
            s_scale = (dlr * (1 - sqrt_beta2)).float()
            for part in _chunks(params):
                g = grads[part]
                s = [self.state[p]["s"] for p in params[part]]
                exp_avg = [self.state[p]["exp_avg"] for p in params[part]]
                exp_avg_sq = [self.state[p]["exp_avg_sq"] for p in params[part]]
                denom = torch._foreach_sqrt(exp_avg_sq)
                torch._foreach_add_(denom, group["eps"])
                ratio = torch._foreach_div(s, denom)
                dots = torch.stack([torch.dot(a.flatten(), b.flatten()) for a, b in zip(g, ratio)]).double()
                numerator += r * dlr * dots.sum()
                del denom, ratio
                torch._foreach_mul_(exp_avg, beta1)
                torch._foreach_add_(exp_avg, torch._foreach_mul(g, avg_scale))
                torch._foreach_mul_(exp_avg_sq, beta2)
                torch._foreach_addcmul_(exp_avg_sq, g, g, value=1 - beta2)
                torch._foreach_mul_(s, sqrt_beta2)
                torch._foreach_add_(s, torch._foreach_mul(g, s_scale))
                sk_l1 += r * torch.stack(torch._foreach_norm(s, 1)).double().sum()

        # sk_l1 is 0 only when every gradient so far was zero (then so are s and exp_avg, and the step
        # below moves nothing): the package returns early, here `d` and the numerator stay as they were.
        moved = sk_l1 > 0
        previous_numerator = torch.as_tensor(first["numerator_weighted"], dtype=torch.float64, device=device)
        numerator_weighted = torch.where(moved, sqrt_beta2 * previous_numerator + (1 - sqrt_beta2) * numerator,
                                         previous_numerator)
        if lr > 0.0:
            d_hat = numerator_weighted / ((1 - sqrt_beta2) * sk_l1.clamp_min(torch.finfo(torch.float64).tiny))
            grown = d * first["growth_rate"] if math.isfinite(first["growth_rate"]) else d_hat
            d = torch.where(moved, torch.maximum(d, torch.minimum(d_hat, grown)), d)
        for group, params in live:
            group["numerator_weighted"], group["d"], group["k"] = numerator_weighted, d, group["k"] + 1
            for p in params:
                self.state[p]["step"] += 1
            decay = (-group["weight_decay"] * dlr * moved).float()
            for part in _chunks(params):
                exp_avg = [self.state[p]["exp_avg"] for p in params[part]]
                denom = torch._foreach_sqrt([self.state[p]["exp_avg_sq"] for p in params[part]])
                torch._foreach_add_(denom, group["eps"])
                if group["weight_decay"] != 0 and group["decouple"]:
                    torch._foreach_add_(params[part], torch._foreach_mul(params[part], decay))
                torch._foreach_addcdiv_(params[part], exp_avg, denom, value=-1)
        return loss
