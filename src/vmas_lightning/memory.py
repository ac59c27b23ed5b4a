"""Per-GPU memory of one training step, from the model built without weights (`vmas profile --memory`).

What is measured and what is counted:

- parameters, gradients: the module's own tensors (trainable / frozen, by dtype); gradients in the
  parameters' dtype (fp32 under mixed precision).
- activations: the tensors autograd saves for backward during one real `compute_losses` call at the
  configured batch, run on fake CPU tensors (`FakeTensorMode`: shapes and dtypes, no data), under CPU
  autocast for `*-mixed` precision, collected with `torch.autograd.graph.saved_tensors_hooks` and
  counted once per storage. Saved parameters are parameters; saved autocast casts of parameters
  (their grad_fn is `ToCopyBackward0` of an `AccumulateGrad`) are the "weight casts".
- optimizer states: the configured optimizer (`optim.build_optimizer`) is stepped once on
  a small parameter and its state bytes per parameter byte are scaled to the trainable parameters.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode  # private module: torch has no public FakeTensorMode

from vmas_lightning.config import OptimConfig
from vmas_lightning.optim import build_optimizer

GiB = 2**30
MIXED_PRECISION = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
PRECISIONS = ("32-true", *MIXED_PRECISION)


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _storage_key(tensor: torch.Tensor) -> int:
    # `_cdata` (the storage's C pointer) is private; fake tensors have no data_ptr, and torch offers no
    # public identity of a storage, so it is the one key that tells views of one storage apart from copies.
    return tensor.untyped_storage()._cdata


def _is_parameter_cast(tensor: torch.Tensor) -> bool:
    """Whether `tensor` (or the tensor it is a view of, e.g. `weight.t()` saved by a matmul) is
    autocast's cast of a leaf parameter (`param.to(dtype)` in the graph)."""
    # `_base` (the tensor a view was made from) is private; torch has no public way to reach it.
    fn = (tensor._base if tensor._base is not None else tensor).grad_fn
    if fn is None or type(fn).__name__ != "ToCopyBackward0":
        return False
    source = fn.next_functions[0][0]
    return isinstance(getattr(source, "variable", None), nn.Parameter)


@dataclass
class SavedTensors:
    """Bytes autograd holds for backward after one forward, split into `activations` and
    `weight_casts`; saved parameters themselves are left out (they are the parameters)."""

    activations: int = 0
    weight_casts: int = 0
    _seen: set = field(default_factory=set)

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in self._seen:
            self._seen.add(key)
            nbytes = tensor.untyped_storage().nbytes()
            if _is_parameter_cast(tensor):
                self.weight_casts += nbytes
            else:
                self.activations += nbytes
        return tensor


def saved_for_backward(module: nn.Module, step: Callable[[], Any], precision: str,
                       saved: SavedTensors | None = None) -> SavedTensors:
    """Run `step()` (a forward of `module`) under `precision`'s autocast (CPU) and count what it
    saves for backward into `saved` (default: a new one); the module's parameters are never counted."""
    saved = saved or SavedTensors()
    saved._seen.update(_storage_key(p) for p in module.parameters())
    dtype = MIXED_PRECISION.get(precision)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda tensor: tensor):
            step()
    return saved


def checkpointed_saved(module: nn.Module, step: Callable[[], Any], precision: str, units: list[nn.Module],
                       enable: Callable[[], None]) -> SavedTensors:
    """`saved_for_backward` of `step()` with activation checkpointing of `units`, which `enable()`
    turns on. Two forwards: without checkpointing, each unit's own saved bytes (backward recomputes
    one unit at a time, so the largest counts once); with it, what is saved outside the units plus
    the inputs each checkpoint keeps."""
    plain, own = SavedTensors(), []

    def total() -> int:
        return plain.activations + plain.weight_casts

    handles = [u.register_forward_pre_hook(lambda m, a: own.append(-total())) for u in units]
    handles += [u.register_forward_hook(lambda m, a, o: own.append(own.pop() + total())) for u in units]
    saved_for_backward(module, step, precision, plain)
    for handle in handles:
        handle.remove()
    enable()
    saved = SavedTensors()

    def keep_inputs(unit: nn.Module, args: tuple, kwargs: dict) -> None:
        for value in (*args, *kwargs.values()):
            if torch.is_tensor(value):
                saved.pack(value)

    handles = [u.register_forward_pre_hook(keep_inputs, with_kwargs=True) for u in units]
    saved_for_backward(module, step, precision, saved)
    for handle in handles:
        handle.remove()
    saved.activations += max(own, default=0)
    return saved


def fake_copy(module: nn.Module) -> tuple[nn.Module, FakeTensorMode]:
    """`module` (built on the meta device) with fake CPU tensors of the same shapes and dtypes."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    with mode:
        module.to_empty(device="cpu")
    return module, mode


def optimizer_state_ratio(cfg: OptimConfig) -> float:
    """Bytes of optimizer state per byte of trainable parameter for the configured optimizer, from
    one real step on a small matrix (AdamW: 2, D-Adapt Adam: 3)."""
    param = nn.Parameter(torch.ones(8, 8))
    with contextlib.redirect_stdout(io.StringIO()):  # D-Adapt Adam prints its settings
        optimizer = build_optimizer([param], cfg)
    param.grad = torch.full_like(param, 0.1)
    optimizer.step()
    states = [v for v in optimizer.state[param].values() if torch.is_tensor(v) and v.shape == param.shape]
    return tensor_bytes(states) / tensor_bytes([param])


def parameter_bytes(module: nn.Module) -> dict[str, dict[str, int]]:
    """`{"trainable" | "frozen": {dtype: bytes}}` of a module's parameters."""
    out: dict[str, dict[str, int]] = {"trainable": {}, "frozen": {}}
    for p in module.parameters():
        group = out["trainable" if p.requires_grad else "frozen"]
        key = str(p.dtype).removeprefix("torch.")
        group[key] = group.get(key, 0) + p.numel() * p.element_size()
    return out


@dataclass
class TrainingSetup:
    """What the trainer does with the model, read from the config (see `vmas profile --memory`).

    Args:
        batch_size: clips per GPU.
        precision: Lightning precision, one of `PRECISIONS`.
        strategy: "ddp" or "fsdp".
        devices: GPUs the model is trained on (FSDP shards over them).
        gradient_as_bucket_view: DDP's option; True makes the gradient buckets views of the gradients.
        ema: an EMA callback (`vmas_lightning.callbacks.EMA` or Lightning's `WeightAveraging`) keeps a
            copy of the parameters and buffers, this rank's shards under FSDP.
        optim: the optimizer's config.
    """

    batch_size: int
    precision: str = "bf16-mixed"
    strategy: str = "ddp"
    devices: int = 1
    gradient_as_bucket_view: bool = False
    ema: bool = False
    optim: OptimConfig = field(default_factory=OptimConfig)


def memory_rows(module: nn.Module, batch_bytes: int, saved: SavedTensors, setup: TrainingSetup,
                units: list[nn.Module] = ()) -> list[dict[str, Any]]:
    """Rows `{"part", "bytes", "note"}` of per-GPU memory for `module` trained as `setup` describes;
    `batch_bytes` is the input batch, `saved` one step's `saved_for_backward` at `setup.batch_size`,
    `units` the submodules FSDP shards as units of their own (the rest is the root unit)."""
    params = parameter_bytes(module)
    trainable, frozen = sum(params["trainable"].values()), sum(params["frozen"].values())
    fsdp, n = setup.strategy == "fsdp", setup.devices
    shard = n if fsdp else 1
    ratio = optimizer_state_ratio(setup.optim)
    buffers = tensor_bytes(module.buffers())

    def dtypes(group: Mapping[str, int]) -> str:
        return ", ".join(f"{k} {v / GiB:.2f} GiB" for k, v in group.items()) or "none"

    sharded = f", sharded over {n} GPUs" if fsdp else ""
    rows = [
        {"part": "parameters (trainable)", "bytes": trainable // shard, "note": dtypes(params["trainable"]) + sharded},
        {"part": "parameters (frozen)", "bytes": frozen // shard, "note": dtypes(params["frozen"]) + sharded},
        {"part": "gradients", "bytes": trainable // shard, "note": "dtype of the parameters" + sharded},
    ]
    if fsdp:
        sizes = [tensor_bytes(unit.parameters()) for unit in units]
        largest = max(sizes, default=0)
        root = tensor_bytes(module.parameters()) - sum(sizes)
        rows.append({"part": "FSDP gathered parameters", "bytes": root + 3 * largest,
                     "note": f"root unit + 2 of the largest of {len(units)} units ({largest / GiB:.3f} GiB) and "
                             f"its unsharded gradient, in the parameters' dtype"})
    else:
        views = setup.gradient_as_bucket_view
        rows.append({"part": "DDP gradient buckets", "bytes": 0 if views else trainable,
                     "note": "views of the gradients (gradient_as_bucket_view)" if views
                     else "a copy of the gradients (gradient_as_bucket_view: false, the default)"})
    rows.append({"part": "optimizer states", "bytes": int(trainable * ratio) // shard,
                 "note": f"{setup.optim.optimizer}: {ratio:g} x the trainable parameters{sharded}"})
    if setup.ema:
        rows.append({"part": "EMA copy", "bytes": (trainable + frozen) // shard + buffers,
                     "note": f"the parameters{sharded}, and the buffers"})
    if setup.precision in MIXED_PRECISION:
        rows.append({"part": "weight casts", "bytes": saved.weight_casts,
                     "note": f"{setup.precision} autocast copies of the parameters, saved for backward"})
    rows.append({"part": "activations", "bytes": saved.activations,
                 "note": f"saved for backward, batch {setup.batch_size}"})
    rows.append({"part": "input batch", "bytes": batch_bytes, "note": f"batch {setup.batch_size}"})
    return rows


def largest_batch(rows: list[dict[str, Any]], batch_size: int, budget: int) -> int:
    """Largest batch per GPU whose total fits `budget` bytes, with activations and input batch linear in the batch."""
    per_batch = {"activations", "input batch"}
    fixed = sum(r["bytes"] for r in rows if r["part"] not in per_batch)
    per_sample = sum(r["bytes"] for r in rows if r["part"] in per_batch) / batch_size
    return max(0, int((budget - fixed) // per_sample)) if per_sample else 0
