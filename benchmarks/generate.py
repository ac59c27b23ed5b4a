"""Token generation speed with and without the KV cache, printed as JSON.

    python benchmarks/generate.py                 # tiny decoder on CPU (+ full size when CUDA is there)
    python benchmarks/generate.py --steps 500 --full auto|on|off

For each decoder and cache setting: token steps/s (T + K - 1 decoder steps for T tokens, with
classifier-free guidance, i.e. batch 2) and the real-time factor (wall time / seconds of music;
below 1 is faster than real time). `cache_speedup` is the ratio of the two wall times.
Decoders are randomly initialised: speed does not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from vmas_lightning.generation import GenerationConfig, MusicGenerator
from vmas_lightning.registry import MUSIC_DECODERS
from vmas_lightning.sequence import SequenceConfig

TINY = {"name": "musicgen", "size": "tiny"}
FULL = {"name": "musicgen", "size": "medium"}  # MusicGen-medium: 48 layers, width 1536, 24 heads
CODEBOOK_SIZE = 2048
COND_DIM, COND_STEPS = 768, 48  # efficient Hiera-B output for a 10-s clip


class DecoderOnly(nn.Module):
    """The part of `VMASModel` that token generation uses: the decoder and a learned null condition."""

    def __init__(self, decoder: nn.Module, sequence: SequenceConfig):
        super().__init__()
        self.decoder = decoder
        self.sequence = sequence
        self.null_condition = nn.Parameter(torch.zeros(COND_DIM))

    def null_features(self, batch_size: int, num_steps: int) -> torch.Tensor:
        return self.null_condition.expand(batch_size, num_steps, -1)


def bench(spec: dict, device: torch.device, num_tokens: int, use_cache: bool, dtype: torch.dtype) -> dict:
    sequence = SequenceConfig()
    decoder = MUSIC_DECODERS.build(spec, num_codebooks=sequence.num_codebooks, codebook_size=CODEBOOK_SIZE, cond_dim=COND_DIM)
    model = DecoderOnly(decoder, sequence).to(device=device, dtype=dtype).eval()
    generator = MusicGenerator(model, GenerationConfig(seed=0, use_cache=use_cache))
    features = torch.randn(1, COND_STEPS, COND_DIM, device=device, dtype=dtype)
    prompt = torch.zeros(1, sequence.num_codebooks, 0, dtype=torch.long, device=device)
    with torch.no_grad():
        generator.generate_window(features, prompt, min(num_tokens, 8))  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        generator.generate_window(features, prompt, num_tokens)
        if device.type == "cuda":
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    steps = num_tokens + sequence.num_codebooks - 1
    return {
        "decoder": spec,
        "layers": decoder.num_layers,
        "width": decoder.width,
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "kv_cache": use_cache,
        "tokens": num_tokens,
        "steps": steps,
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds, 2),
        "real_time_factor": round(seconds / (num_tokens / sequence.token_rate), 4),
    }


def compare(spec: dict, device: torch.device, num_tokens: int, dtype: torch.dtype) -> dict:
    cached = bench(spec, device, num_tokens, True, dtype)
    uncached = bench(spec, device, num_tokens, False, dtype)
    return {"with_cache": cached, "without_cache": uncached,
            "cache_speedup": round(uncached["seconds"] / cached["seconds"], 2)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="tokens to generate (T); the decoder runs T + K - 1 steps")
    parser.add_argument("--full", choices=["auto", "on", "off"], default="auto", help="full-size decoder (auto: when CUDA is available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"tiny_cpu": compare(TINY, torch.device("cpu"), args.steps, torch.float32)}
    if args.full == "on" or (args.full == "auto" and torch.cuda.is_available()):
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        result["full"] = compare(FULL, device, args.steps, dtype)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
