"""`vmas demo-assets`: fit the demo's codec (`mel_rvq`) and its style evaluator (`demo_style`).

Both are fitted on the music of the demo's training split (the same clips `vmas demo-data --seed S`
writes), so neither ever hears a validation or test clip; the codec's round trip is then measured on
validation clips (pitch class of each note, onsets against the true note onsets, peak, DC offset). The files are small and committed under
checkpoints/demo/; this command remakes them from scratch.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ArgumentParser
from tqdm.auto import tqdm

from vmas_lightning.config_file import add_config_argument, load_config, stacked_paths
from vmas_lightning.data.demo import STYLES, synthesize_clip
from vmas_lightning.errors import VMASError
from vmas_lightning.metrics.demo_style import fit_style_net
from vmas_lightning.metrics.synthetic import round_trip_quality
from vmas_lightning.models.codecs.mel_rvq import MelRVQConfig, fit_mel_rvq

HELP = "Fit the demo's mel_rvq codec and demo_style evaluator on the demo's training music."
CODEC_FILE, STYLE_FILE = "mel_rvq.pt", "style_net.pt"
DEFAULT_CONFIG = "configs/demo.yaml"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas demo-assets", description=HELP)
    add_config_argument(parser, "its model.sequence sets the codec geometry", default=DEFAULT_CONFIG)
    parser.add_argument("--out", default="checkpoints/demo", help=f"Folder for {CODEC_FILE} and {STYLE_FILE}.")
    parser.add_argument("--seed", type=int, default=0, help="Demo-data seed whose training split is fitted on.")
    parser.add_argument("--num-clips", type=int, default=160, help="Training clips to fit on.")
    parser.add_argument("--codebook-size", type=int, default=MelRVQConfig.codebook_size, help="Centroids per codebook.")
    parser.add_argument("--num-check", type=int, default=16, help="Validation clips on which the round trip is measured.")
    return parser


def run(cfg) -> int:
    if cfg.num_clips < 1:
        raise VMASError(f"--num-clips must be >= 1, got {cfg.num_clips}")
    sequence = load_config(stacked_paths(cfg.config, DEFAULT_CONFIG), trainer=False).model.sequence
    out = Path(cfg.out)
    started = time.perf_counter()
    clips = [synthesize_clip(cfg.seed, "train", i, sequence) for i in tqdm(range(cfg.num_clips), desc="synthesise", unit="clip")]
    audio = [clip["audio"] for clip in clips]
    codec_config = MelRVQConfig(
        sample_rate=sequence.sample_rate,
        hop_length=sequence.hop_length,
        num_codebooks=sequence.num_codebooks,
        codebook_size=cfg.codebook_size,
    )
    codec = fit_mel_rvq(audio, codec_config, seed=cfg.seed, progress=print)
    names = [style.name for style in STYLES]
    labels = [names.index(clip["meta"]["style"]) for clip in clips]
    net = fit_style_net(audio, labels, names, sequence.sample_rate, seed=cfg.seed, progress=print)
    written = {"codec": str(codec.save(out / CODEC_FILE)), "style_net": str(net.save(out / STYLE_FILE))}
    held_out = [synthesize_clip(cfg.seed, "val", i, sequence) for i in range(cfg.num_check)]
    original = [clip["audio"] for clip in held_out]
    decoded = codec.decode(codec.encode(torch.from_numpy(np.stack(original))[:, None]))[:, 0].numpy()
    quality = round_trip_quality(original, list(decoded), sequence.sample_rate, [clip["meta"] for clip in held_out])
    print(json.dumps({**written, "clips": cfg.num_clips, "seed": cfg.seed, "seconds": round(time.perf_counter() - started, 1),
                      "round_trip": {key: round(value, 4) for key, value in quality.items()}}))
    return 0
