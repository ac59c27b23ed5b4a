"""`vmas profile --config CFG [--json]`: parameters, encoder output shape and FLOPs of the configured model;
`vmas profile --memory --config CFG [--config CFG2 ...] [--devices N --strategy ddp|fsdp --batch-size B --gpu-memory 78]`:
per-GPU memory of one training step (`vmas_lightning.memory`), with a verdict against the GPU. Several
`--config` files are stacked in order, read as `vmas fit` reads them (`config_file.load_config`).

The model is built on the meta device without pretrained weights (the `pretrained` options are
dropped, except where a plugin cannot exist without its file, such as the demo's fitted codec; so the decoder's `size` must match the checkpoint it would load; `medium` by default), and
FLOPs are counted with `torch.utils.flop_counter.FlopCounterMode` (a multiply-add counts as two):
the encoder on one clip at batch 1, the decoder on one teacher-forced pass over the `T + K - 1`
delayed steps at batch 1, divided by the number of steps.
"""
from __future__ import annotations

import json
from typing import Any, Literal, Optional

import torch
from jsonargparse import ArgumentParser
from torch.utils.flop_counter import FlopCounterMode

from vmas_lightning.config import ModelConfig
from vmas_lightning.config_file import add_config_argument, load_config
from vmas_lightning.errors import VMASError
from vmas_lightning.models.vmas import VMASModel

MEMORY_OPTIONS = ("devices", "strategy", "batch_size", "gpu_memory")  # read only by --memory
HELP = "Parameters, encoder output shape, GFLOPs and per-GPU training memory of the model in a config (no weights needed)."


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas profile", description=HELP)
    add_config_argument(parser, "its model: section is profiled (e.g. configs/vmas.yaml, then configs/cluster/fsdp.yaml)",
                        required=True)
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of a table.")
    parser.add_argument("--memory", action="store_true", help="Per-GPU memory of one training step instead.")
    parser.add_argument("--devices", type=Optional[int], default=None,
                        help="GPUs in all (FSDP shards over them); default: trainer.devices x trainer.num_nodes, else 1.")
    parser.add_argument("--strategy", type=Optional[Literal["ddp", "fsdp"]], default=None,
                        help="Override trainer.strategy (fsdp: FSDP2, one unit per MusicGen layer and Hiera block).")
    parser.add_argument("--batch-size", type=Optional[int], default=None, help="Clips per GPU; default: data.batch_size.")
    parser.add_argument("--gpu-memory", type=Optional[str], default=None,
                        help="Usable memory of one GPU for the verdict: GiB, or with a unit (78GiB, 85.9GB); "
                             "default: 78GiB, an H100 80GB less its CUDA context.")
    return parser


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _count_flops(fn, *args) -> tuple[float, dict[str, float], Any]:
    with FlopCounterMode(display=False) as counter:
        out = fn(*args)
    by_op = {str(op).removeprefix("aten."): n / 1e9 for op, n in counter.get_flop_counts()["Global"].items()}
    return counter.get_total_flops() / 1e9, by_op, out


def profile(model_config: ModelConfig) -> dict[str, Any]:
    """Build `VMASModel` from a `model:` section on the meta device and measure it."""
    sequence = model_config.sequence
    specs = vars(model_config.without_weights())
    with torch.device("meta"):
        model = VMASModel(specs["encoder"], specs["decoder"], specs["codec"], sequence, text=specs["text"]).eval()
        video = torch.empty(1, 3, sequence.num_frames, sequence.frame_size, sequence.frame_size)
    with torch.no_grad():
        enc_gflops, enc_by_op, features = _count_flops(model.encode_video, video)
        steps = sequence.num_delayed_steps
        tokens = torch.zeros(1, model.codec.num_codebooks, steps, dtype=torch.long, device="meta")
        text = None if model.text is None else torch.empty(1, model.text.max_tokens, model.decoder.width, device="meta")
        dec_gflops, _, _ = _count_flops(model.decoder, tokens, features, None, False, text)

    frozen_text = 0 if model.text is None else sum(p.numel() for p in model.text.parameters() if not p.requires_grad)

    def name(spec: Any) -> str:
        return spec if isinstance(spec, str) else spec["name"]

    return {
        "encoder": {
            "name": name(specs["encoder"]),
            "params": _params(model.encoder),
            "input_shape": list(video.shape[1:]),
            "output_shape": list(features.shape[1:]),
            "frames_per_feature": model.frames_per_feature,
            "feature_rate": model.feature_rate,
            "gflops": round(enc_gflops, 2),
            "gflops_by_op": {op: round(v, 2) for op, v in enc_by_op.items()},
        },
        "decoder": {
            "name": name(specs["decoder"]),
            "params": _params(model.decoder),
            "layers": model.decoder.num_layers,
            "width": model.decoder.width,
            "gflops_per_step": round(dec_gflops / steps, 3),
            "steps": steps,
        },
        "codec": {
            "name": name(specs["codec"]),
            "params": _params(model.codec),
            "sample_rate": model.codec.sample_rate,
            "frame_rate": model.codec.frame_rate,
            "codebooks": model.codec.num_codebooks,
            "codebook_size": model.codec.codebook_size,
        },
        "text": None if model.text is None else {
            "name": name(specs["text"]),
            "params": _params(model.text),
            "frozen_params": frozen_text,
            "tokens": model.text.max_tokens,
        },
        "trainable_params": _params(model) - _params(model.codec) - frozen_text,
    }


def run(cfg) -> int:
    if cfg.memory:
        from vmas_lightning.cli.profile_memory import run_memory

        return run_memory(cfg)
    memory_only = [f"--{name.replace('_', '-')}" for name in MEMORY_OPTIONS if getattr(cfg, name) is not None]
    if memory_only:
        raise VMASError(f"{', '.join(memory_only)}: only with --memory")
    report = profile(load_config(cfg.config).model)
    if cfg.json:
        print(json.dumps(report, indent=2))
        return 0
    enc, dec, codec = report["encoder"], report["decoder"], report["codec"]
    print(f"encoder  {enc['name']}: {enc['params'] / 1e6:.1f} M params, input {enc['input_shape']} -> "
          f"{enc['output_shape']} ({enc['feature_rate']:g} features/s), {enc['gflops']:.1f} GFLOPs "
          f"({', '.join(f'{op} {v:.1f}' for op, v in enc['gflops_by_op'].items())})")
    print(f"decoder  {dec['name']}: {dec['params'] / 1e9:.3f} B params, {dec['layers']} layers, width "
          f"{dec['width']}, {dec['gflops_per_step']:.2f} GFLOPs per token step")
    print(f"codec    {codec['name']}: {codec['params'] / 1e6:.1f} M params (frozen), {codec['sample_rate']} Hz, "
          f"{codec['frame_rate']} frames/s, {codec['codebooks']} codebooks of {codec['codebook_size']}")
    if text := report["text"]:
        print(f"text     {text['name']}: {text['params'] / 1e6:.1f} M params ({text['frozen_params'] / 1e6:.1f} M frozen), "
              f"{text['tokens']} tokens in the decoder's cross-attention memory")
    print(f"trainable {report['trainable_params'] / 1e9:.3f} B params")
    return 0
