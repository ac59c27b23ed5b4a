"""`vmas prepare`: curate raw videos into DISCO-MV shards; `vmas prepare merge` joins array-job shards."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser
from tqdm.auto import tqdm

from vmas_lightning.data.prepare import (
    REPORT_NAME, Outcome, PrepareOptions, collect_inputs, commit_outcome, curate_all, merge_output, merge_shards,
    read_report, shard_dir, shard_of,
)
from vmas_lightning.data.shards import SPLITS, DataConfig
from vmas_lightning.errors import VMASError
from vmas_lightning.registry import PluginSpec

HELP = "Curate raw videos (files, folders, globs, manifests) into training shards with a per-file report."


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas prepare", description=HELP)
    parser.add_argument("action", nargs="?", default="curate", choices=["curate", "merge"],
                        help="'merge' joins OUTPUT/shard-*-of-*/ into OUTPUT/ (after an array job).")
    parser.add_argument("--config", default="configs/tiny.yaml", help="Training config: clip geometry, codec, beats.")
    parser.add_argument("--input", nargs="+", default=[], help="Video files, folders, globs or .csv/.jsonl manifests.")
    parser.add_argument("--output", required=True, help="Dataset folder: <split>/, parts/, report.jsonl.")
    parser.add_argument("--workers", type=int, default=1, help="Worker processes on this machine.")
    parser.add_argument("--num-shards", type=int, default=1, help="Array-job size: inputs are split into this many shards.")
    parser.add_argument("--shard-index", type=int, default=0, help="This task's shard (e.g. $SLURM_ARRAY_TASK_ID).")
    parser.add_argument("--separator", type=PluginSpec, default="htdemucs",
                        help="Vocal removal: htdemucs | none, or with options: '{name: htdemucs, repo: DIR}'.")
    parser.add_argument("--embedder", type=PluginSpec, default="pixel_stats",
                        help="Frame embedder of the visual filter: pixel_stats | clip, or '{name: clip, pretrained: FILE}'.")
    parser.add_argument("--similarity-threshold", type=float, default=0.7, help="Reject videos at or above this frame similarity.")
    parser.add_argument("--clip-seconds", type=Optional[float], default=None, help="Clip length (default: the config's duration).")
    parser.add_argument("--hop-seconds", type=Optional[float], default=None, help="Clip hop (default: the clip length).")
    parser.add_argument("--silence-rms", type=float, default=1e-3, help="Drop clips whose RMS is below this.")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="Per-input time limit.")
    parser.add_argument("--split", default="train", choices=list(SPLITS), help="Split of inputs (a manifest's split column wins).")
    parser.add_argument("--require-audio", type=bool, default=True, help="Fail inputs without an audio track.")
    return parser


def run(cfg) -> int:
    if cfg.action == "merge":
        counts = merge_shards(cfg.output)
        print(json.dumps({"output": str(Path(cfg.output)), "clips": counts}))
        return 0
    if not cfg.input:
        raise VMASError("--input is required (files, folders, globs or manifests)")
    config = DataConfig.from_yaml(cfg.config)
    clip_s = cfg.clip_seconds or config.sequence.duration_s
    if clip_s <= 0 or (cfg.hop_seconds is not None and cfg.hop_seconds <= 0) or cfg.workers < 1 or cfg.timeout_s <= 0:
        raise VMASError("--clip-seconds, --hop-seconds, --workers and --timeout-s must be positive")
    options = PrepareOptions(
        clip_s=clip_s, hop_s=cfg.hop_seconds, similarity_threshold=cfg.similarity_threshold, embedder=cfg.embedder,
        separator=cfg.separator, require_audio=cfg.require_audio, silence_rms=cfg.silence_rms, split=cfg.split,
    )
    output = shard_dir(cfg.output, cfg.num_shards, cfg.shard_index)
    output.mkdir(parents=True, exist_ok=True)
    items = shard_of(collect_inputs(cfg.input), cfg.num_shards, cfg.shard_index)
    done = read_report(output)
    todo = [item for item in items if item.path not in done]
    totals = {"kept": 0, "rejected": 0, "failed": 0, "clips": 0}
    started = time.monotonic()
    with tqdm(total=len(todo), unit="file", desc="prepare", dynamic_ncols=True) as bar:

        def on_outcome(outcome: Outcome) -> None:
            commit_outcome(output, outcome, config.sequence.sample_rate)
            totals[outcome.status] += 1
            totals["clips"] += len(outcome.records)
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.set_postfix(clips=totals["clips"], clips_per_s=f"{totals['clips'] / elapsed:.2f}",
                            rejected=totals["rejected"], failed=totals["failed"])
            bar.update(1)

        curate_all(todo, config, options, cfg.workers, cfg.timeout_s, on_outcome)
    counts = merge_output(output)
    print(json.dumps({"output": str(output), "skipped": len(items) - len(todo), **totals, "dataset": counts,
                      "report": str(output / REPORT_NAME)}))
    return 0
