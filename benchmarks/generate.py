"""Token generation speed of each decode path, before and after, in one run, printed as JSON.

    python benchmarks/generate.py                          # tiny decoder on CPU
    python benchmarks/generate.py --decoder medium         # MusicGen-medium (bf16 on CUDA)
    python benchmarks/generate.py --modes dynamic,cuda_graph --batches 1,32 --steps 500

Paths (`--modes`): `no_cache` (every step recomputes the whole prefix; batch 1 only), `dynamic`
(transformers' growing KV cache: the path before the static cache), `static` (preallocated cache,
eager steps), `cuda_graph` (static, each step one CUDA graph replay) and `torch_compile` (static,
compiled step). For each path and batch size B: a warm-up window (it pays capture or compilation,
`warmup_s`), then B clips of `--steps` tokens (T + K - 1 decoder steps) with classifier-free
guidance (a doubled batch), top-k 250 and a seed per clip, as `vmas test` samples them.
`seconds_per_clip` is the batch's wall time / B; `clips_per_s` its inverse; `real_time_factor` is
seconds_per_clip / seconds of one clip's music (below 1 is faster than real time). `same_greedy_tokens`:
the share of greedy (temperature 0) tokens of a 2-clip batch (`--agreement-tokens`) equal to the dynamic path's (fp32 on
CPU: 1.0; bf16 may differ where two logits tie within rounding). On CUDA, `host_syncs_per_step`
counts the host synchronisations torch reports during a 20-token window, its setup included (0: the
host runs ahead of the device).
Decoders are randomly initialised: speed does not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings

import torch
from torch import nn

from vmas_lightning.generation import GenerationConfig, MusicGenerator
from vmas_lightning.generation.sampling import make_generator
from vmas_lightning.registry import MUSIC_DECODERS
from vmas_lightning.sequence import SequenceConfig

DECODERS = {"tiny": {"name": "musicgen", "size": "tiny"},  # configs/tiny.yaml's sizes
            "medium": {"name": "musicgen", "size": "medium"}}  # MusicGen-medium: 48 layers, width 1536, 24 heads
MODES = ("no_cache", "dynamic", "static", "cuda_graph", "torch_compile")
CODEBOOK_SIZE = 2048
COND_DIM, FRAMES_PER_FEATURE = 768, 2  # efficient Hiera-B: 48 features for a 10-s clip of 96 frames


class DecoderOnly(nn.Module):
    """The part of `VMASModel` that token generation uses: the decoder and a learned null condition (no text)."""

    def __init__(self, decoder: nn.Module, sequence: SequenceConfig):
        super().__init__()
        self.decoder = decoder
        self.text = None
        self.sequence = sequence
        self.frames_per_feature = FRAMES_PER_FEATURE
        self.null_condition = nn.Parameter(torch.zeros(COND_DIM))

    def null_features(self, batch_size: int, num_steps: int) -> torch.Tensor:
        return self.null_condition.expand(batch_size, num_steps, -1)


def mode_config(mode: str, **sampling) -> GenerationConfig:
    return GenerationConfig(use_cache=mode != "no_cache", static_cache=mode not in ("no_cache", "dynamic"),
                            decode_step=mode if mode in ("cuda_graph", "torch_compile") else "eager", **sampling)


class Bench:
    """One decoder on one device: `run(mode, batch)` and `agreement(mode)`."""

    def __init__(self, decoder: str, device: torch.device, dtype: torch.dtype, num_tokens: int):
        self.sequence = SequenceConfig()
        self.device, self.dtype, self.num_tokens = device, dtype, num_tokens
        built = MUSIC_DECODERS.build(DECODERS[decoder], num_codebooks=self.sequence.num_codebooks,
                                     codebook_size=CODEBOOK_SIZE, cond_dim=COND_DIM)
        self.model = DecoderOnly(built, self.sequence).to(device=device, dtype=dtype).eval()
        self.info = {"decoder": DECODERS[decoder], "layers": built.num_layers, "width": built.width, "device": str(device),
                     "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                     "dtype": str(dtype).replace("torch.", ""), "tokens": num_tokens,
                     "steps": num_tokens + self.sequence.num_codebooks - 1, "torch": torch.__version__,
                     "weight_bytes": sum(p.numel() * p.element_size() for p in built.parameters())}
        self.num_cond = math.ceil(self.sequence.num_frames / FRAMES_PER_FEATURE)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def window(self, mode: str, batch: int, num_tokens: int, **sampling) -> tuple[torch.Tensor, float]:
        """Tokens `[batch, K, num_tokens]` of one window by `mode`, and its seconds."""
        generator, features, prompt, rng = self.inputs(mode, batch, **sampling)
        self.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            tokens = generator.generate_window(features, prompt, num_tokens, rng)
        self.synchronize()
        return tokens, time.perf_counter() - start

    def inputs(self, mode: str, batch: int, **sampling) -> tuple:
        """A generator for `mode`, random features, an empty prompt and a generator per clip."""
        generator = MusicGenerator(self.model, mode_config(mode, **sampling))
        features = torch.randn(batch, self.num_cond, COND_DIM, device=self.device, dtype=self.dtype,
                               generator=make_generator(0, self.device))
        prompt = torch.zeros(batch, self.sequence.num_codebooks, 0, dtype=torch.long, device=self.device)
        return generator, features, prompt, [make_generator(seed, self.device) for seed in range(batch)]

    def run(self, mode: str, batch: int) -> dict:
        _, warmup = self.window(mode, batch, min(self.num_tokens, 8), top_k=250)
        _, seconds = self.window(mode, batch, self.num_tokens, top_k=250)
        steps = self.info["steps"]
        music_s = self.num_tokens / self.sequence.token_rate
        result = {"batch": batch, "warmup_s": round(warmup, 3), "seconds": round(seconds, 3),
                  "steps_per_s": round(steps / seconds, 2), "seconds_per_clip": round(seconds / batch, 4),
                  "clips_per_s": round(batch / seconds, 3), "real_time_factor": round(seconds / batch / music_s, 4)}
        if batch == 1:  # each step reads every weight once: how near the memory bound a step is
            result["weight_gb_per_s"] = round(self.info["weight_bytes"] * steps / seconds / 1e9, 1)
        return result

    def agreement(self, mode: str, reference: torch.Tensor, num_tokens: int) -> float:
        tokens, _ = self.window(mode, 2, num_tokens, temperature=0.0)
        return round((tokens == reference).float().mean().item(), 4)

    def host_syncs_per_step(self, mode: str) -> float:
        """Host synchronisations torch warns of (CUDA's sync debug mode) per step of a 20-token window,
        its setup included; the cache is captured or compiled before, and nothing is timed."""
        self.window(mode, 1, 20)
        generator, features, prompt, rng = self.inputs(mode, 1)
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                generator.generate_window(features, prompt, 20, rng)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        return round(syncs / (20 + self.sequence.num_codebooks - 1), 2)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decoder", choices=sorted(DECODERS), default="tiny")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--modes", default=None, help=f"comma-separated, of {', '.join(MODES)} (default: every one the "
                        "device runs: cuda_graph on CUDA only)")
    parser.add_argument("--batches", default="1,16,32", help="comma-separated batch sizes (no_cache: batch 1 only)")
    parser.add_argument("--steps", type=int, default=500, help="tokens per clip (T); the decoder runs T + K - 1 steps")
    parser.add_argument("--agreement-tokens", type=int, default=100, help="tokens of the greedy agreement check")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    modes = args.modes.split(",") if args.modes else [m for m in MODES if device.type == "cuda" or m != "cuda_graph"]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown modes: {', '.join(sorted(unknown))}")
    if not 1 <= args.steps <= SequenceConfig().num_tokens:  # one window: the cache the warm-up made is the one timed
        parser.error(f"--steps must be 1 to {SequenceConfig().num_tokens} (one 10-s window)")
    batches = [int(b) for b in args.batches.split(",")]
    bench = Bench(args.decoder, device, torch.bfloat16 if device.type == "cuda" else torch.float32, args.steps)
    result = {**bench.info, "runs": {}}
    reference = bench.window("dynamic", 2, args.agreement_tokens, temperature=0.0)[0]
    for mode in modes:
        runs = [bench.run(mode, batch) for batch in batches if mode != "no_cache" or batch == 1]
        result["runs"][mode] = {"by_batch": runs, "same_greedy_tokens": bench.agreement(mode, reference, args.agreement_tokens)}
        if device.type == "cuda" and mode != "no_cache":
            result["runs"][mode]["host_syncs_per_step"] = bench.host_syncs_per_step(mode)
        print(json.dumps({mode: result["runs"][mode]}), flush=True, file=sys.stderr)  # progress
    first = {mode: runs["by_batch"][0]["seconds"] for mode, runs in result["runs"].items() if runs["by_batch"][0]["batch"] == 1}
    if "dynamic" in first:
        result["speedup_at_batch_1_over_dynamic"] = {mode: round(first["dynamic"] / s, 2) for mode, s in first.items()}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
