"""Training step at full size: seconds per step and the GPU memory peak of a config, printed as JSON.

    python benchmarks/train_step.py --config configs/vmas.yaml [--config MORE.yaml] [--steps 10] [--warmup 3]

The model, trainer and callbacks are what `vmas fit --config ...` builds (`VMASCLI`: precision,
strategy, EMA, `PeakMemoryMonitor`, optimizer, gradient clipping, activation checkpointing), on one
device, with random weights (the `pretrained` sources set to null, as `vmas profile` drops them:
speed and memory do not depend on the weights) and no checkpoints written (logs go to a temporary folder). Every step
trains on the same batch of random video, tokens and beats of the data module's shapes and dtypes
(`vmas profile --memory`'s `fake_batch`), moved to the device each step as a real batch is.

Prints `seconds_per_step` (median over the steps after `--warmup`, each timed between
synchronisations of the device), `phase_seconds` (medians of forward, backward, optimizer with
gradient clipping, and batch-end hooks such as EMA: `StepTimer`), `clips_per_s`, `mfu` (model FLOPs per step, `model_tflop_per_step`:
`vmas profile`'s forward count x3 for what trains, over the seconds, over the device's data-sheet bf16
peak when it is a known GPU, else over a large matmul's measured peak; both peaks are printed), `peak_allocated_gib` (the largest step peak of
`PeakMemoryMonitor`: forward, backward, optimizer and EMA update), `peak_reserved_gib` (the caching
allocator's peak in the last step; it does not hand memory back between steps), the device, the
library versions, and `estimate_gib`, what `vmas profile --memory` says for the same configs on
one device, with the measured peak's ratio to it. `--profile-steps N` runs N more steps under
torch.profiler (not timed) and adds `profile`: the operators that took the most self time (device time
on CUDA), per step and as shares.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from types import SimpleNamespace

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from vmas_lightning.callbacks import PeakMemoryMonitor
from vmas_lightning.cli.lightning import VMASCLI
from vmas_lightning.cli.profile_memory import fake_batch, memory_report
from vmas_lightning.config import ModelConfig
from vmas_lightning.config_file import load_config
from vmas_lightning.memory import GiB


PHASES = ("forward", "backward", "optimizer", "batch_end")


class StepTimer(L.Callback):
    """Wall time of each training step, forward to the end of the last batch-end hook (EMA update),
    and of its phases (`PHASES`), each ended by a synchronisation of the device: the forward and
    loss, the backward, the optimizer (gradient clipping and the update), and the batch-end hooks
    (EMA, `PeakMemoryMonitor`). The optimizer phase ends in the batch-end hook of `OptimizerDone`,
    which goes first among the callbacks. (The batch's move to the device comes before the step.)"""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.phases: dict[str, list[float]] = {phase: [] for phase in PHASES}
        self.device = torch.device("cpu")  # where training ran (the strategy moves the module back at the end)
        self._marks: list[float] = []

    def _mark(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        self._marks.append(time.perf_counter())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.device = pl_module.device
        self._marks = []
        self._mark(pl_module)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._mark(pl_module)

    def on_after_backward(self, trainer, pl_module) -> None:
        self._mark(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._mark(pl_module)
        self.seconds.append(self._marks[-1] - self._marks[0])
        if len(self._marks) == len(PHASES) + 1:  # one forward and backward per step (no accumulation)
            for phase, start, end in zip(PHASES, self._marks, self._marks[1:]):
                self.phases[phase].append(end - start)


class OptimizerDone(L.Callback):
    """Marks the end of the optimizer step for `timer` (put first among the callbacks)."""

    def __init__(self, timer: StepTimer) -> None:
        self.timer = timer

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.timer._mark(pl_module)


class OpProfile(L.Callback):
    """`torch.profiler` over `steps` training steps from `first_step` (batch start to batch end, CPU and,
    on CUDA, device activity): `table(top)` gives the operators that took the most self time on the
    device (CUDA) or the host (CPU), per step, with their share of the profiled steps' time."""

    def __init__(self, first_step: int, steps: int) -> None:
        self.first_step, self.steps = first_step, steps
        self.profiler: torch.profiler.profile | None = None
        self.wall = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.first_step:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if pl_module.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
                torch.cuda.synchronize(pl_module.device)
            self.profiler = torch.profiler.profile(activities=activities)
            self.profiler.start()
            self.wall = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.profiler is not None and batch_idx == self.first_step + self.steps - 1:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self.wall = time.perf_counter() - self.wall
            self.profiler.stop()

    def table(self, top: int = 25) -> dict:
        events = self.profiler.key_averages()
        cuda = any(getattr(e, "self_device_time_total", 0) for e in events)
        def self_us(event) -> float:
            return event.self_device_time_total if cuda else event.self_cpu_time_total
        total = sum(self_us(e) for e in events)
        rows = sorted(events, key=self_us, reverse=True)[:top]
        return {
            "steps": self.steps, "time": "device" if cuda else "host", "wall_ms_per_step": round(1e3 * self.wall / self.steps, 2),
            "self_ms_per_step_all_ops": round(total / 1e3 / self.steps, 2),
            "ops": [{"op": e.key, "calls_per_step": round(e.count / self.steps, 1),
                     "self_ms_per_step": round(self_us(e) / 1e3 / self.steps, 3),
                     "share": round(self_us(e) / total, 4) if total else None} for e in rows],
        }


# Dense bf16 peak (TFLOP/s, no sparsity) of known accelerators, from their makers' data sheets.
PEAK_BF16_TFLOPS = {"H100 80GB HBM3": 989.4, "H100 SXM": 989.4, "H200": 989.4, "H100 PCIe": 756.0, "A100": 312.0}


def spec_peak_tflops(device_name: str) -> float | None:
    """The data-sheet bf16 peak of a known GPU by its name (None: not in `PEAK_BF16_TFLOPS`)."""
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def measured_peak_tflops(device: torch.device) -> float:
    """TFLOP/s of a large matmul on `device` (bf16 8192^2 on CUDA, float32 2048^2 on CPU): the
    attainable peak where the data sheet is unknown, and a check of it where it is known."""
    cuda = device.type == "cuda"
    size, dtype, repeats = (8192, torch.bfloat16, 20) if cuda else (2048, torch.float32, 5)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    for _ in range(2):  # warm-up: kernels chosen, clocks up
        a @ b
    if cuda:
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if cuda:
        torch.cuda.synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def model_tflop_per_step(model_config: ModelConfig, batch_size: int, encoder_trained: bool) -> float:
    """Model FLOPs of one training step (TFLOP): forward FLOPs counted by `vmas profile` (encoder per
    clip, decoder per token step), x3 for forward and backward of what trains (x1 for a frozen
    encoder), x the batch. Recomputation by activation checkpointing is not model FLOPs."""
    from vmas_lightning.cli.profile import profile

    counted = profile(model_config)
    encoder = counted["encoder"]["gflops"] * (3 if encoder_trained else 1)
    decoder = 3 * counted["decoder"]["gflops_per_step"] * counted["decoder"]["steps"]
    return batch_size * (encoder + decoder) / 1e3


class RepeatedBatch(torch.utils.data.IterableDataset):
    """`steps` times the same random batch (`batch_size=None` in the loader: it is one batch already)."""

    def __init__(self, batch: dict[str, torch.Tensor], steps: int):
        self.batch, self.steps = batch, steps

    def __iter__(self):
        return (self.batch for _ in range(self.steps))


def random_batch(sequence, batch_size: int, codebook_size: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    batch = fake_batch(sequence, batch_size)
    batch["video"] = torch.randint(0, 256, batch["video"].shape, dtype=torch.uint8, generator=generator)
    batch["tokens"] = torch.randint(0, codebook_size, batch["tokens"].shape, generator=generator)
    batch["overlap"] = (torch.rand(batch["overlap"].shape, generator=generator) < 0.1).float()
    return batch


def measure(configs: list[str], steps: int, warmup: int, batch_size: int | None, profile_steps: int = 0) -> dict:
    args = [arg for path in configs for arg in ("--config", path)]
    overrides = {
        "trainer.devices": "1", "trainer.num_nodes": "1", "trainer.max_steps": str(steps + profile_steps),
        "trainer.enable_progress_bar": "false", "trainer.enable_model_summary": "false",
        "trainer.limit_val_batches": "0",
        "model.encoder.pretrained": "null", "model.decoder.pretrained": "null", "model.codec.pretrained": "null",
    }
    if batch_size is not None:
        overrides["data.batch_size"] = str(batch_size)
    with tempfile.TemporaryDirectory() as root:
        overrides["trainer.default_root_dir"] = root
        flags = [item for key, value in overrides.items() for item in (f"--{key}", value)]
        cli = VMASCLI(args + flags, run=False)
        trainer, module = cli.trainer, cli.model
        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, ModelCheckpoint)]  # no 30-GB files
        timer = StepTimer()
        trainer.callbacks.insert(0, OptimizerDone(timer))
        trainer.callbacks.append(timer)
        profiler = OpProfile(steps, profile_steps) if profile_steps else None  # after the timed steps
        if profiler is not None:
            trainer.callbacks.append(profiler)
        monitor = next((c for c in trainer.callbacks if isinstance(c, PeakMemoryMonitor)), None)
        if monitor is None:
            monitor = PeakMemoryMonitor()
            trainer.callbacks.append(monitor)
        batch_size = cli.datamodule.config.batch_size
        batch = random_batch(module.model.sequence, batch_size, module.model.codec.codebook_size)
        loader = torch.utils.data.DataLoader(RepeatedBatch(batch, steps + profile_steps), batch_size=None)
        trainer.fit(module, train_dataloaders=loader)
        model_config = load_config(configs, flags).model  # the model section the CLI built, typed
    timed = timer.seconds[warmup:steps]
    seconds = statistics.median(timed)
    device = timer.device
    cuda = device.type == "cuda"
    device_name = torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
    encoder_trained = any(p.requires_grad for p in module.model.encoder.parameters())
    tflop = model_tflop_per_step(model_config, batch_size, encoder_trained)
    measured_peak = measured_peak_tflops(device)
    spec_peak = spec_peak_tflops(device_name) if cuda else None
    estimate = memory_report(configs, SimpleNamespace(devices=1, strategy=None, batch_size=batch_size, gpu_memory=None))
    peak = monitor.max_allocated / GiB
    return {
        "configs": configs,
        "batch_size": batch_size,
        "precision": str(trainer.precision),
        "strategy": type(trainer.strategy).__name__,
        "activation_checkpointing": bool(module.hparams.activation_checkpointing),
        "optimizer": module.config.optim.optimizer,
        "trainable_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "steps_timed": len(timed),
        "seconds_per_step": round(seconds, 4),
        "seconds_per_step_range": [round(min(timed), 4), round(max(timed), 4)],
        "first_step_seconds": round(timer.seconds[0], 2),
        "phase_seconds": {phase: round(statistics.median(times[warmup:steps]), 4) for phase, times in timer.phases.items()},
        "clips_per_s": round(batch_size / seconds, 2),
        "model_tflop_per_step": round(tflop, 6),
        "achieved_tflops": round(tflop / seconds, 6),
        "peak_tflops_spec": spec_peak,
        "peak_tflops_measured": round(measured_peak, 4),
        "mfu": round(tflop / seconds / (spec_peak or measured_peak), 4),
        "mfu_basis": "data-sheet bf16 peak" if spec_peak else "measured matmul peak",
        "peak_allocated_gib": round(peak, 2) if cuda else None,
        "peak_reserved_gib": round(torch.cuda.max_memory_reserved(device) / GiB, 2) if cuda else None,
        "estimate_gib": round(estimate["total_bytes"] / GiB, 2),
        "peak_over_estimate": round(peak / (estimate["total_bytes"] / GiB), 3) if cuda else None,
        "device": device_name,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__},
        **({"profile": profiler.table()} if profiler is not None else {}),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", required=True, help="LightningCLI config; repeat to stack")
    parser.add_argument("--steps", type=int, default=10, help="training steps in all")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per step (default: data.batch_size)")
    parser.add_argument("--profile-steps", type=int, default=0, help="N more steps after the timed ones under "
                        "torch.profiler: the operators that took the most time (`profile`)")
    args = parser.parse_args(argv)
    if not 0 <= args.warmup < args.steps:
        parser.error("--warmup must be below --steps")
    if args.profile_steps < 0:
        parser.error("--profile-steps must be >= 0")
    result = measure(args.config, args.steps, args.warmup, args.batch_size, args.profile_steps)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
