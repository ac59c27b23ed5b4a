"""`vmas prepare`: curate raw videos into DISCO-MV shards; `vmas prepare merge` joins array-job shards;
`vmas prepare upload` copies the splits to object storage (`data.root: s3://bucket/prefix`)."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser
from tqdm.auto import tqdm

from vmas_lightning.cli import writable_folder
from vmas_lightning.data.prepare import (
    REPORT_NAME, Curator, InputItem, Outcome, PrepareOptions, check_settings, collect_inputs, commit_outcome, curate_all,
    merge_output, merge_shards, output_lock, read_report, shard_dir, shard_of, write_report,
)
from vmas_lightning.data.object_store import upload_dataset
from vmas_lightning.config_file import add_config_argument, stacked_paths
from vmas_lightning.data.shards import SPLITS, ShardConfig, annotation_settings, expand_plugin_settings
from vmas_lightning.errors import Interrupted, VMASError
from vmas_lightning.registry import FrameEmbedderSpec, SourceSeparatorSpec

DEFAULTS = PrepareOptions()  # the curation defaults live in PrepareOptions
HELP = "Curate raw videos (files, folders, globs, manifests) into training shards with a per-file report."
DEFAULT_CONFIG = "configs/tiny.yaml"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas prepare", description=HELP)
    parser.add_argument("action", nargs="?", default="curate", choices=["curate", "merge", "upload"],
                        help="'merge' joins OUTPUT/shard-*-of-*/ into OUTPUT/ (after an array job); "
                             "'upload' copies OUTPUT's splits to --to.")
    add_config_argument(parser, "its clip geometry, codec and beats", default=DEFAULT_CONFIG)
    parser.add_argument("--input", nargs="+", default=[], help="Video files, folders, globs or .csv/.jsonl manifests.")
    parser.add_argument("--output", required=True, help="Dataset folder: <split>/, parts/, report.jsonl.")
    parser.add_argument("--to", default=None,
                        help="For 'upload': s3://bucket/prefix (endpoint and credentials as boto3 reads them: "
                             "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...; see docs/DATA.md).")
    parser.add_argument("--workers", type=int, default=1, help="Worker processes on this machine.")
    parser.add_argument("--num-shards", type=int, default=1, help="Array-job size: inputs are split into this many shards.")
    parser.add_argument("--shard-index", type=int, default=0, help="This task's shard (e.g. $SLURM_ARRAY_TASK_ID).")
    parser.add_argument("--separator", type=SourceSeparatorSpec, default=DEFAULTS.separator,
                        help="Vocal removal: htdemucs | none, or with options: '{name: htdemucs, repo: DIR}'.")
    parser.add_argument("--embedder", type=FrameEmbedderSpec, default=DEFAULTS.embedder,
                        help="Frame embedder of the visual filter: pixel_stats | clip, or '{name: clip, pretrained: FILE}'.")
    parser.add_argument("--similarity-threshold", type=float, default=DEFAULTS.similarity_threshold,
                        help="Reject videos at or above this frame similarity (0.7: the paper's, for CLIP features).")
    parser.add_argument("--clip-seconds", type=Optional[float], default=None, help="Clip length (default: the config's duration).")
    parser.add_argument("--hop-seconds", type=Optional[float], default=DEFAULTS.hop_s, help="Clip hop (default: the clip length).")
    parser.add_argument("--silence-rms", type=float, default=DEFAULTS.silence_rms, help="Drop clips whose RMS is below this.")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="Per-input time limit.")
    parser.add_argument("--split", default=DEFAULTS.split, choices=list(SPLITS), help="Split of inputs (a manifest's split column wins).")
    parser.add_argument("--require-audio", type=bool, default=DEFAULTS.require_audio, help="Fail inputs without an audio track.")
    parser.add_argument("--retry-failed", action="store_true", help="Curate again the inputs the report lists as failed.")
    parser.add_argument("--caption-column", default=DEFAULTS.caption_column,
                        help="Manifest column holding each video's caption (titles, tags or a music caption), stored "
                        "with every clip of it for a model with text (model.text); a video without one gets none.")
    return parser


def shard_settings(config: ShardConfig, options: PrepareOptions) -> dict:
    """What decides the clips, by config key (`annotation_settings`) and flag (not --split, --workers
    or --timeout-s)."""
    return json.loads(json.dumps({
        **annotation_settings(config), "--clip-seconds": options.clip_s, "--hop-seconds": options.hop_s,
        "--similarity-threshold": options.similarity_threshold,
        **expand_plugin_settings({"--embedder": options.embedder, "--separator": options.separator}),
        "--require-audio": options.require_audio, "--silence-rms": options.silence_rms,
    }))


def run(cfg) -> int:
    if cfg.to and cfg.action != "upload":
        raise VMASError("--to is read by 'vmas prepare upload' only")
    if cfg.action == "merge":
        counts = merge_shards(cfg.output)
        print(json.dumps({"output": str(Path(cfg.output)), "clips": counts}, ensure_ascii=False))
        return 0
    if cfg.action == "upload":
        if not cfg.to:
            raise VMASError("vmas prepare upload needs --to s3://bucket/prefix")
        print(json.dumps({"output": str(Path(cfg.output)), "to": cfg.to, "files": upload_dataset(cfg.output, cfg.to)}))
        return 0
    if not cfg.input:
        raise VMASError("--input is required (files, folders, globs or manifests)")
    config = ShardConfig.from_configs(stacked_paths(cfg.config, DEFAULT_CONFIG))
    clip_s = cfg.clip_seconds or config.sequence.duration_s
    if clip_s <= 0 or (cfg.hop_seconds is not None and cfg.hop_seconds <= 0) or cfg.workers < 1 or cfg.timeout_s <= 0:
        raise VMASError("--clip-seconds, --hop-seconds, --workers and --timeout-s must be positive")
    options = PrepareOptions(
        clip_s=clip_s, hop_s=cfg.hop_seconds, similarity_threshold=cfg.similarity_threshold, embedder=cfg.embedder,
        separator=cfg.separator, require_audio=cfg.require_audio, silence_rms=cfg.silence_rms, split=cfg.split,
        caption_column=cfg.caption_column,
    )
    items = shard_of(collect_inputs(cfg.input), cfg.num_shards, cfg.shard_index)
    output = shard_dir(cfg.output, cfg.num_shards, cfg.shard_index)
    created = not output.exists()
    writable_folder(output, "--output")
    with output_lock(output):
        try:
            check_settings(output, shard_settings(config, options))
            Curator(config, options)  # the plugins and their weights, checked once before any worker starts
            summary = curate_into(output, items, config, options, cfg.workers, cfg.timeout_s, cfg.retry_failed)
        except BaseException:
            if created and not read_report(output):  # nothing curated: leave no folder behind
                shutil.rmtree(output, ignore_errors=True)
            raise
    print(json.dumps(summary, ensure_ascii=False))
    return 0


def curate_into(output: Path, items: list[InputItem], config: ShardConfig, options: PrepareOptions, workers: int,
                timeout_s: float, retry_failed: bool) -> dict:
    """Curate the inputs not yet in the report (and the failed ones with `retry_failed`), join the
    parts, rewrite the report with one line per input; returns the run's summary."""
    done = read_report(output)
    todo = [item for item in items if item.path not in done or (retry_failed and done[item.path]["status"] == "failed")]
    totals = {"kept": 0, "rejected": 0, "failed": 0, "ignored": 0, "clips": 0}
    started = time.monotonic()
    with tqdm(total=len(todo), unit="file", desc="prepare", dynamic_ncols=True) as bar:

        def on_outcome(outcome: Outcome) -> None:
            commit_outcome(output, outcome, config)
            totals[outcome.status] += 1
            totals["clips"] += len(outcome.records)
            elapsed = max(time.monotonic() - started, 1e-6)
            bar.set_postfix(clips=totals["clips"], clips_per_s=f"{totals['clips'] / elapsed:.2f}",
                            rejected=totals["rejected"], failed=totals["failed"])
            bar.update(1)

        try:
            for item in todo:
                if item.ignored:
                    on_outcome(Outcome(item.path, item.split or options.split, "ignored", item.ignored))
            curate_all([item for item in todo if not item.ignored], config, options, workers, timeout_s, on_outcome)
        except KeyboardInterrupt:
            raise Interrupted(f"interrupted; every input finished so far is saved in {output / REPORT_NAME}: "
                              "run the same command again to go on") from None
    write_report(output, read_report(output).values())  # one line per input, also for inputs tried again
    return {"output": str(output), "skipped": len(items) - len(todo), **totals, "dataset": merge_output(output),
            "report": str(output / REPORT_NAME)}
