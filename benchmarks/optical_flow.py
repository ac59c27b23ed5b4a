"""Optical flow per frame pair, the video-beat cost of curation and `vmas beats`, printed as JSON.

    python benchmarks/optical_flow.py [--pairs 32] [--size 224] [--threads N]

Each `OPTICAL_FLOWS` plugin on the same frames (`benchmarks/dataloader.py`'s smooth multi-scale
texture, panned diagonally across one frame side over the clip, `--size` square): `farneback` and
`dis` on the CPU; `raft` small and large (12 refinements, 8 pairs per batch) with random weights
(speed does not depend on them) on the CPU and, when CUDA is there, on CUDA, where
`max_rel_diff_vs_cpu` compares the magnitudes with the CPU's from the same weights (cuDNN's TF32
convolutions may make them differ in the last digits: 2e-4 on an H100). `ms_per_pair` is the wall
time of one call over all pairs (after one warm-up call) divided by the pairs. Each method does a
fixed amount of work per pair (fixed pyramid levels and iterations, fixed RAFT refinements).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from dataloader import textured_frames  # benchmarks/: the data-loader benchmark's panning texture

from vmas_lightning.registry import OPTICAL_FLOWS


def timed(flow, frames: np.ndarray) -> tuple[float, np.ndarray]:
    flow(frames[:3])  # warm-up (cuDNN autotuning, allocations)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    magnitudes = flow(frames)
    return time.perf_counter() - start, magnitudes


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=32, help="frame pairs per call")
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    frames = textured_frames(np.random.default_rng(0), args.pairs + 1, args.size)
    specs = [("farneback", "cpu", "farneback"), ("dis", "cpu", "dis")]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    specs += [(f"raft_{size}", device, {"name": "raft", "size": size, "pretrained": None, "device": device})
              for size in ("small", "large") for device in devices]
    rows, cpu_magnitudes = [], {}
    for label, device, spec in specs:
        seconds, magnitudes = timed(OPTICAL_FLOWS.build(spec), frames)
        row = {"flow": label, "device": device, "ms_per_pair": round(1000 * seconds / args.pairs, 2),
               "mean_magnitude": round(float(magnitudes.mean()), 4)}
        if device == "cpu":
            cpu_magnitudes[label] = magnitudes
        elif label in cpu_magnitudes:
            reference = cpu_magnitudes[label]
            row["max_rel_diff_vs_cpu"] = float(np.abs(magnitudes - reference).max() / np.abs(reference).max())
        rows.append(row)
    result = {"pairs": args.pairs, "size": args.size, "torch_threads": torch.get_num_threads(),
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "rows": rows}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
