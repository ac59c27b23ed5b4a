"""`vmas profile --memory`: per-GPU memory of one training step of a config, and whether it fits.

The `trainer:` block gives the precision, the strategy (DDP and its `gradient_as_bucket_view`, or
FSDP2: `ModelParallelStrategy`, sharded by `VMASModule.configure_model`), the devices and whether an
EMA callback is on;
`data.batch_size` the clips per GPU; `model.optim` the optimizer. The model is built on the meta
device without pretrained weights (as `vmas profile` does) and given fake CPU tensors; one
`compute_losses` at the configured batch and clip length is run on them (`vmas_lightning.memory`;
with `model.activation_checkpointing`, two: see `memory.checkpointed_saved`).
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Mapping

import torch

from vmas_lightning.config import ModelConfig
from vmas_lightning.config_file import RunConfig, config_name, load_config
from vmas_lightning.errors import VMASError
from vmas_lightning.memory import (
    GiB, PRECISIONS, TrainingSetup, checkpointed_saved, fake_copy, largest_batch, memory_rows, saved_for_backward, tensor_bytes,
)
from vmas_lightning.optim import check_shardable

DEFAULT_GPU_MEMORY = "78GiB"  # an H100 80GB less its CUDA context
DDP_NAMES = ("ddp", "ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true", "auto")


def parse_gpu_memory(text: str) -> int:
    """"80", "80GiB", "79.6 GiB" (binary) or "85.9GB" (decimal) -> bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(GiB|GB|G)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise VMASError(f"--gpu-memory: '{text}' is not a size such as 80, 80GiB or 85.9GB")
    value, unit = float(match[1]), (match[2] or "GiB").lower()
    return int(value * (1e9 if unit == "gb" else GiB))


def _strategy(trainer: Mapping[str, Any], override: str | None, where: str) -> tuple[str, dict[str, Any]]:
    """("ddp" | "fsdp", its init_args) of `trainer.strategy`, or of `override`."""
    spec = trainer.get("strategy", "auto")
    if isinstance(spec, Mapping):
        name, args = str(spec.get("class_path", "")).rsplit(".", 1)[-1], dict(spec.get("init_args") or {})
        kind = {"DDPStrategy": "ddp", "ModelParallelStrategy": "fsdp"}.get(name)
    else:
        args, kind = {}, "ddp" if spec in DDP_NAMES else None
    if override is not None and override != kind:
        return override, {}
    if kind is None:
        raise VMASError(f"{where}: trainer.strategy {spec!r} is not profiled; use ddp or ModelParallelStrategy "
                        "(FSDP2, configs/cluster/fsdp.yaml), or --strategy")
    return kind, args


def _has_ema(trainer: Mapping[str, Any], strategy: str, where: str) -> bool:
    """Whether `trainer.callbacks` keeps an EMA; Lightning's `WeightAveraging` is refused under FSDP."""
    names = [str(c.get("class_path", "") if isinstance(c, Mapping) else c) for c in trainer.get("callbacks") or []]
    if strategy == "fsdp" and any(name.endswith("WeightAveraging") for name in names):
        raise VMASError(f"{where}: Lightning's WeightAveraging does not work under FSDP (it deep-copies the sharded "
                        "module); use vmas_lightning.callbacks.EMA (docs/SCALING.md)")
    return any(name.endswith("WeightAveraging") or name == "vmas_lightning.callbacks.EMA" for name in names)


def training_setup(config: RunConfig, cfg, where: str) -> TrainingSetup:
    """The `TrainingSetup` of a config, with the command line's overrides."""
    trainer = config.trainer
    precision = str(trainer.get("precision") or "32-true")
    if precision not in PRECISIONS:
        raise VMASError(f"{where}: trainer.precision {precision!r} is not profiled; known: {', '.join(PRECISIONS)}")
    strategy, args = _strategy(trainer, cfg.strategy, where)
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes")
    configured = devices * nodes if isinstance(devices, int) and isinstance(nodes, int) else 1
    setup = TrainingSetup(
        batch_size=cfg.batch_size or config.data.batch_size,
        precision=precision,
        strategy=strategy,
        devices=cfg.devices or configured,
        gradient_as_bucket_view=bool(args.get("gradient_as_bucket_view", False)),
        ema=_has_ema(trainer, strategy, where),
        optim=config.model.optim,
    )
    if setup.strategy == "fsdp":
        check_shardable(setup.optim)
    if setup.batch_size < 1 or setup.devices < 1:
        raise VMASError(f"need a batch size and devices >= 1, got {setup.batch_size} and {setup.devices}")
    return setup


def build_module(model_config: ModelConfig):
    """`VMASModule` of a `model:` section (pretrained sources dropped) on the meta device."""
    from vmas_lightning.lit_module import VMASModule

    with torch.device("meta"):
        return VMASModule(**vars(model_config.without_weights()))


def fake_batch(sequence, batch_size: int) -> dict[str, torch.Tensor]:
    """A training batch of the data module's shapes and dtypes (see `data.datamodule`)."""
    size = sequence.frame_size
    return {
        "video": torch.empty(batch_size, 3, sequence.num_frames, size, size, dtype=torch.uint8),
        "tokens": torch.zeros(batch_size, sequence.num_codebooks, sequence.num_tokens, dtype=torch.long),
        "overlap": torch.zeros(batch_size, sequence.num_tokens),
        "caption": [" ".join(["word"] * 1000)] * batch_size,  # as long as a text conditioner takes (a model with text)
    }


def memory_report(config_paths: str | list[str], cfg) -> dict[str, Any]:
    """Rows, total, budget and largest batch of a config (or a stack of them, merged in order) trained
    as it says (and `cfg` overrides)."""
    config = load_config(config_paths)
    setup = training_setup(config, cfg, config_name(config_paths))
    checkpointing = config.model.activation_checkpointing
    module, mode = fake_copy(build_module(dataclasses.replace(config.model, activation_checkpointing=False)))
    with mode:
        batch = fake_batch(module.model.sequence, setup.batch_size)
        module.train()

        def step() -> dict[str, torch.Tensor]:
            return module.compute_losses(batch)

        if checkpointing:
            parts = module.model.checkpointed_parts()
            units = [unit for part in parts for unit in part.checkpoint_units()]
            saved = checkpointed_saved(module, step, setup.precision, units,
                                       lambda: [part.enable_activation_checkpointing() for part in parts])
        else:
            saved = saved_for_backward(module, step, setup.precision)
    rows = memory_rows(module, tensor_bytes(v for v in batch.values() if torch.is_tensor(v)), saved, setup, module.sharding_units())
    if checkpointing:
        for row in rows:
            if row["part"] == "activations":
                row["note"] += ("; activation checkpointing: saved outside the decoder layers and encoder blocks, their "
                                "inputs, and the largest one's activations, recomputed in backward")
    total, budget = sum(r["bytes"] for r in rows), parse_gpu_memory(cfg.gpu_memory or DEFAULT_GPU_MEMORY)
    return {
        "config": config_name(config_paths),
        "setup": {k: v for k, v in vars(setup).items() if k != "optim"} | {"optimizer": setup.optim.optimizer,
                                                                          "activation_checkpointing": checkpointing},
        "rows": rows,
        "total_bytes": total,
        "gpu_memory_bytes": budget,
        "fits": total <= budget,
        "largest_batch_per_gpu": largest_batch(rows, setup.batch_size, budget),
        "method": "activations: tensors saved for backward by one compute_losses on fake CPU tensors at the "
                  "configured batch and clip length (CPU autocast for mixed precision); every row held at once "
                  "(an upper bound: gradients grow while activations are freed); CUDA context, allocator "
                  "fragmentation and backward temporaries not included",
    }


def verdict(report: Mapping[str, Any]) -> str:
    total, budget = report["total_bytes"] / GiB, report["gpu_memory_bytes"] / GiB
    word = "fits" if report["fits"] else "does not fit"
    return f"{word}: {total:.1f} of {budget:.1f} GiB ({100 * total / budget:.0f}%)"


def run_memory(cfg) -> int:
    report = memory_report(cfg.config, cfg)
    if cfg.json:
        print(json.dumps(report, indent=2))
        return 0
    setup = report["setup"]
    print(f"{report['config']}: {setup['strategy']} on {setup['devices']} GPU(s), {setup['precision']}, "
          f"batch {setup['batch_size']} per GPU, {setup['optimizer']}{', EMA' if setup['ema'] else ''}")
    for row in report["rows"]:
        print(f"  {row['part']:26s} {row['bytes'] / GiB:7.2f} GiB  {row['note']}")
    print(f"  {'total':26s} {report['total_bytes'] / GiB:7.2f} GiB")
    print(f"{verdict(report)}; largest batch per GPU {report['largest_batch_per_gpu']}")
    print(f"method: {report['method']}")
    return 0
