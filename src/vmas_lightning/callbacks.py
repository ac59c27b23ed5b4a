"""Training callbacks of the project (add them to `trainer.callbacks` by `class_path`)."""
from __future__ import annotations

from typing import Any

import lightning as L
import torch

GiB = 2**30


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
