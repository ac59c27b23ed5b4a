"""Training callbacks of the project (add them to `trainer.callbacks` by `class_path`)."""
from __future__ import annotations

from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch.distributed.tensor import DTensor

from vmas_lightning.errors import VMASError

GiB = 2**30


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter or buffer: its shard under FSDP2 (a DTensor), else itself."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def is_sharded(module: torch.nn.Module) -> bool:
    """Whether `module` has FSDP2-sharded (DTensor) parameters."""
    return any(isinstance(p, DTensor) for p in module.parameters())


class EMA(L.Callback):
    """Exponential moving average of the weights that works sharded: it keeps each parameter and
    buffer as the module holds it, whole under DDP or on one device, and only this rank's shard
    under FSDP2 (`configs/cluster/fsdp.yaml`, DTensor parameters), where it costs 1/N of a copy.

    The maths and the checkpoint layout are those of Lightning's `EMAWeightAveraging(decay=...,
    multi_avg_fn=get_ema_multi_avg_fn(decay))` (which deep-copies the whole module and does not work
    sharded, see docs/SCALING.md): after every optimizer step `ema = lerp(ema, weights, 1 - decay)`
    over all parameters and buffers, one foreach kernel for all floating tensors of a device and
    dtype (its default `get_ema_avg_fn` loops over tensors, 2 temporaries each; the two agree to
    float32 rounding), the first step copying them; validation runs on the EMA weights and training ends with them in the
    module; a checkpoint's `state_dict` holds the EMA weights (what `vmas test`, `generate` and
    `export` read), `current_model_state` the training weights and `averaging_state` the number of
    updates, each as the strategy writes a state dict (FSDP2: gathered whole on rank 0). Either
    callback resumes from the other's checkpoints.

    Args:
        decay: weight of the running average at each update.
    """

    def __init__(self, decay: float = 0.999):
        if not 0.0 <= decay <= 1.0:
            raise VMASError(f"EMA: decay must be in [0, 1], got {decay}")
        self.decay = decay
        self._ema: Optional[list[torch.Tensor]] = None  # this rank's part of every parameter and buffer
        self._n_averaged = 0
        self._latest_update_step = 0

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if isinstance(trainer.strategy, FSDPStrategy):
            raise VMASError("EMA: Lightning's FSDPStrategy (FSDP1) is not supported; shard with configs/cluster/fsdp.yaml "
                            "(ModelParallelStrategy, FSDP2)")

    @staticmethod
    def _current(pl_module: L.LightningModule) -> list[torch.Tensor]:
        return [_local(t).detach() for t in (*pl_module.parameters(), *pl_module.buffers())]

    def _pairs(self, pl_module: L.LightningModule) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(EMA, current) of every parameter and buffer; the EMA follows the module to its device
        (a checkpoint is restored before DDP moves the module)."""
        current = self._current(pl_module)
        if len(current) != len(self._ema):
            raise VMASError(f"EMA: the module has {len(current)} parameters and buffers, the average {len(self._ema)}")
        self._ema = [e.to(c.device) for e, c in zip(self._ema, current)]
        return list(zip(self._ema, current))

    @torch.no_grad()
    def _swap(self, pl_module: L.LightningModule) -> None:
        for ema, current in self._pairs(pl_module):
            held = ema.clone()
            ema.copy_(current)
            current.copy_(held)

    @torch.no_grad()
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step <= self._latest_update_step:  # no optimizer step in this batch (accumulation)
            return
        self._latest_update_step = trainer.global_step
        if self._ema is None or self._n_averaged == 0:
            self._ema = [t.clone() for t in self._current(pl_module)]
        else:
            pairs = self._pairs(pl_module)
            floats = [(ema, current) for ema, current in pairs if ema.is_floating_point()]
            if floats:  # one foreach kernel per device and dtype, in place (torch's get_ema_multi_avg_fn)
                torch._foreach_lerp_([ema for ema, _ in floats], [current for _, current in floats], 1 - self.decay)
            for ema, current in pairs:
                if not ema.is_floating_point():  # integer buffers (BatchNorm's step count)
                    ema.copy_(self.decay * ema + (1 - self.decay) * current)
        self._n_averaged += 1

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._ema is not None:
            self._swap(pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._ema is not None:
            self._swap(pl_module)

    @torch.no_grad()
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._ema is not None:
            for ema, current in self._pairs(pl_module):
                current.copy_(ema)

    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self._latest_update_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_step = state_dict["latest_update_step"]

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Every rank: the EMA weights, gathered by the strategy like the training weights, become `state_dict`."""
        if self._ema is None:
            return
        self._swap(pl_module)
        try:  # cloned: under DDP the state dict holds the module's own tensors, swapped back below
            average = {k: v.detach().clone() if torch.is_tensor(v) else v
                       for k, v in trainer.strategy.lightning_module_state_dict().items()}
        finally:
            self._swap(pl_module)
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = average
        checkpoint["averaging_state"] = {"n_averaged": torch.tensor(self._n_averaged, dtype=torch.long)}

    @torch.no_grad()
    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Resuming a fit: the strategy has loaded `state_dict` (the EMA weights of an EMA checkpoint)
        into the module; they become the average and `current_model_state` goes into the module."""
        if "current_model_state" not in checkpoint:
            return  # a checkpoint without an average: it starts again from the next step's weights
        self._ema = [t.clone() for t in self._current(pl_module)]
        self._n_averaged = int(checkpoint["averaging_state"]["n_averaged"])
        current = checkpoint["current_model_state"]
        if is_sharded(pl_module):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(pl_module, current, options=StateDictOptions(full_state_dict=True))
        else:
            pl_module.load_state_dict(current)


class PeakMemoryMonitor(L.Callback):
    """Logs the GPU memory peak of every training step: `memory/step_peak_allocated_gib` (forward,
    backward, optimizer step and the other callbacks' batch-end work, from
    `torch.cuda.max_memory_allocated`, reset when the step starts), `memory/step_peak_reserved_gib`
    (the caching allocator's, what `nvidia-smi` shows less the CUDA context) and
    `memory/max_allocated_gib` (the largest step peak so far). Each rank measures its own GPU; the
    logger writes rank 0's. On any other device it does nothing. Compare with `vmas profile --memory`
    (docs/SCALING.md)."""

    def __init__(self) -> None:
        self.max_allocated = 0

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if pl_module.device.type != "cuda":
            return
        allocated = torch.cuda.max_memory_allocated(pl_module.device)
        self.max_allocated = max(self.max_allocated, allocated)
        pl_module.log_dict({
            "memory/step_peak_allocated_gib": allocated / GiB,
            "memory/step_peak_reserved_gib": torch.cuda.max_memory_reserved(pl_module.device) / GiB,
            "memory/max_allocated_gib": self.max_allocated / GiB,
        }, on_step=True, on_epoch=False)
