"""The paper's ablation (Table 5) and encoder comparison (Table 6) at laptop scale, with seeds and 95% intervals.

    python benchmarks/ablation.py                       # every table, 3 seeds, on 2 CPU cores (1-2 days: RESULTS.md)
    python benchmarks/ablation.py --records benchmarks/results/ablation --jobs 2  # RESULTS.md's runs: trains only what is missing
    python benchmarks/ablation.py --tables 5 --seeds 0 1 2 3 4
    python benchmarks/ablation.py --quick --out /tmp/x  # a few steps on a few clips: checks the pipeline only
    python benchmarks/ablation.py --device cuda --jobs 8 --data-workers 16 --pack OUT/records.json  # on one GPU machine
    python benchmarks/ablation.py --records benchmarks/results/ablation --unpack records.json       # its records, here

One demo dataset (`vmas demo-data --seed 0`, 6,000 training clips as the demo model's) is written
once. Each row trains `configs/demo.yaml` with its overlay for `--steps` steps (default: the
config's 4,000) per seed (`seed_everything`), and `vmas test` evaluates every
run on the same held-out test clips (the dataset's test split, never trained on). For each row and
metric: mean and the half-width of the 95% t-interval over seeds; for each step of Table 5 (a row
minus the row above) the same over the per-seed differences (`paired_differences`). The reference rows come from the
same evaluation: the clips' own music (the ideal) and another clip's music (chance).

Table 5 rows: AR baseline (alpha 0, no beat weighting), + contrastive (alpha from the config), and
+ contrastive + video-beat weighting (the config itself, VMAs). Table 6 rows: the VMAs row with
`efficient_hiera`, and the same recipe with `hiera` and `clip` encoders (tiny, same budget), with
training wall time per step (measured in one process, both cores) and encoder GFLOPs per clip.
The lambda table (ours; the paper gives no lambda) has the + contrastive row, the VMAs row
(lambda 1) and the VMAs recipe with lambda 0.1 and 0.01, each paired with the first. The
architecture table (ours) asks whether beat weighting helps where the decoder must find the timing
through cross-attention, as the paper's does: the demo decoder (its own timing paths,
`TIMING_OPTIONS`) and the paper's (the config's decoder without them), each without and with beat
weighting, paired within each decoder. A run that is a row of several tables is trained once.
Each finished run leaves a record (`<records>/<row>/seed<k>.json`: the test metrics, steps, seconds
per step, the recipe that made it and where; `clips.csv` beside it), and a run whose record exists
is not trained again; a stopped run resumes from its newest checkpoint under `--out` (every 250
steps). So a benchmark killed at any point goes on where it stopped: run the same command again.
The records are small: keep them (`--records benchmarks/results/ablation`, committed) and the
tables grow across machines and sessions while the checkpoints and data stay behind. A record made
by another recipe (config, weights, overlay, steps, seed, data) is refused, never mixed in.
`--report-only` prints the tables of the runs recorded so far. On a GPU machine (`--device cuda`) the
`--jobs` runs share the one GPU, `--data-workers` processes write the demo data there, and `--pack`
gathers every record into one file to carry back; `--unpack` writes them into `--records` here.
Prints one JSON object; writes it and the Markdown tables to `<out>/ablation.{json,md}`.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

from vmas_lightning.cli.main import main as vmas
from vmas_lightning.cli.profile import profile
from vmas_lightning.config_file import RunConfig, load_config
from vmas_lightning.data.shards import setting_differences
from vmas_lightning.files import LockHeld, file_lock
from vmas_lightning.metrics.suite import CLIPS_FILE, METRICS_FILE, format_cell

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("fad", "kl", "mv_align", "alignment_z", "onset_alignment_z", "onset_f1", "style_accuracy", "onsets_per_clip",
           "recall@1", "recall@10", "ce", "ce_shuffled_video", "ce_beats", "ce_off_beats")
VMAS = "+ contrastive + beat weighting (VMAs)"
TABLE5 = {
    "AR baseline": {"model": {"loss": {"alpha": 0.0, "beat_weighting": False}}},
    "+ contrastive": {"model": {"loss": {"beat_weighting": False}}},
    VMAS: {},
}
TABLE6 = {
    "efficient_hiera (VMAs)": {},
    "hiera": {"model": {"encoder": {"name": "hiera", "size": "tiny"}}},
    "clip": {"model": {"encoder": {"name": "clip", "size": "tiny", "frames_per_feature": 2}}},
}
# Not in the paper (it gives no lambda): how strongly beat weighting weights the overlap steps, w_t = o_t + lambda.
# On demo data o_t = 1 at 1.6% of the steps (`train/beat_share`), which hold 1.6% of the loss
# unweighted, 3% with lambda 1, 15% with lambda 0.1 and 62% with lambda 0.01.
TABLE_LAMBDA = {
    "no beat weighting (+ contrastive)": TABLE5["+ contrastive"],
    "lambda 1 (VMAs)": {},
    "lambda 0.1": {"model": {"loss": {"beat_lambda": 0.1}}},
    "lambda 0.01": {"model": {"loss": {"beat_lambda": 0.01}}},
}
# Not in the paper either: beat weighting where the decoder must find the timing itself. The demo decoder has
# timing paths of its own (`time_embedding`, `aligned_condition`: each token step gets its moment's video
# feature); the paper's reads the video through cross-attention alone. Its rows drop those options from
# the config's decoder (`paper_decoder`), with and without beat weighting.
TIMING_OPTIONS = ("time_embedding", "aligned_condition", "aligned_upsample", "aligned_interpolation")
PAPER_DECODER = "paper decoder"  # cross-attention only
TABLE_ARCH_PAIRS = (("demo decoder, no beat weighting", "demo decoder, beat weighting (VMAs)"),
                    (f"{PAPER_DECODER}, no beat weighting", f"{PAPER_DECODER}, beat weighting"))
TABLES = {"5": TABLE5, "lambda": TABLE_LAMBDA, "6": TABLE6, "arch": None}  # arch: `table_rows` builds it from the config
# rows of several tables that are the same runs: trained once, under the first name
SAME_RUN = {"efficient_hiera (VMAs)": VMAS, "lambda 1 (VMAs)": VMAS, "no beat weighting (+ contrastive)": "+ contrastive",
            "demo decoder, no beat weighting": "+ contrastive", "demo decoder, beat weighting (VMAs)": VMAS}
# SPEC section 8, DISCO-MV (FAD, KL, MV-Align), and retrieval R@10 (%).
PAPER_TABLE5 = {"AR baseline": (2.75, 1.40, 0.243), "+ contrastive": (2.40, 1.34, 0.251), VMAS: (2.38, 1.34, 0.352)}
PAPER_TABLE6_GFLOPS = {"efficient_hiera (VMAs)": 130.7, "hiera": 281.6, "clip": 140.2}


def paper_decoder(base: RunConfig) -> dict:
    """The config's decoder spec without the demo's timing paths (`TIMING_OPTIONS`): cross-attention only."""
    return {key: value for key, value in base.model.decoder.items() if key not in TIMING_OPTIONS}


def table_rows(number: str, base: RunConfig) -> dict[str, dict]:
    """Row name -> overlay of table `number` (the architecture table's paper rows derive from `base`)."""
    if number != "arch":
        return TABLES[number]
    paper = {"decoder": paper_decoder(base)}
    return {
        "demo decoder, no beat weighting": TABLE5["+ contrastive"],
        "demo decoder, beat weighting (VMAs)": {},
        f"{PAPER_DECODER}, no beat weighting": {"model": {**paper, **TABLE5["+ contrastive"]["model"]}},
        f"{PAPER_DECODER}, beat weighting": {"model": paper},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "ablation"), help="data, checkpoints, logs, tables")
    parser.add_argument("--records", default=None,
                        help="the finished runs' records, reused by later calls (default: <out>/records)")
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES),
                        help="5 and 6: the paper's; lambda: beat weighting's lambda; arch: beat weighting with the "
                             "demo's decoder and with the paper's cross-attention-only one (ours)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: the config's)")
    parser.add_argument("--num-train", type=int, default=None, help="training clips (default: the demo model's 6,000)")
    parser.add_argument("--num-test", type=int, default=None, help="held-out test clips (default: 32)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs trained at once, each in its own process with cores/jobs threads (2 on 2 cores: "
                             "about 1.4x the runs per hour of 1; RESULTS.md)")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)  # one of --jobs's: runs, no report
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where each run trains and is tested (cuda: one GPU, shared by the --jobs runs)")
    parser.add_argument("--data-workers", type=int, default=1, help="processes writing the demo data (vmas demo-data --workers)")
    parser.add_argument("--pack", default=None,
                        help="also write every finished record (with its clips.csv) into this one JSON file, to carry "
                             "back from a machine that returns few files")
    parser.add_argument("--unpack", default=None,
                        help="train nothing: write the records of a --pack file into --records (refusing a record "
                             "of another recipe already there), then report")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: the tables from the runs recorded so far (others: '-')")
    parser.add_argument("--quick", action="store_true",
                        help="2 seeds, 2 steps, 8 training and 4 test clips, MV-Align on the model-rate frames: "
                             "checks the pipeline only")
    args = parser.parse_args(argv)
    if args.quick:
        if (args.steps, args.num_train, args.num_test) != (None, None, None):
            parser.error("--quick sets the steps and clips: drop --steps, --num-train and --num-test")
        args.seeds, args.steps, args.num_train, args.num_test = args.seeds[:2], 2, 8, 4
    if args.steps is None:
        args.steps = int(load_config(args.config).trainer["max_steps"])
    args.num_train = 6000 if args.num_train is None else args.num_train
    args.num_test = 32 if args.num_test is None else args.num_test
    if args.num_train < 1 or args.num_test < 2:
        parser.error("--num-train must be at least 1 and --num-test at least 2 (retrieval ranks the test clips)")
    if len(args.seeds) < 2:
        parser.error("at least 2 seeds are needed for an interval")
    if args.jobs < 1 or args.data_workers < 1:
        parser.error("--jobs and --data-workers must be at least 1")
    args.records = Path(args.records) if args.records else Path(args.out) / "records"
    return args


def run_vmas(*argv: str) -> None:
    code = vmas(list(argv))
    if code != 0:
        raise SystemExit(f"vmas {' '.join(argv[:1])} failed with exit code {code}: {' '.join(argv)}")


def run_slug(name: str) -> str:
    """A row's folder name: `+ contrastive + beat weighting (VMAs)` -> `plus_contrastive_plus_beat_weighting`."""
    return name.split(" (")[0].replace(",", "").replace(" ", "_").replace("+", "plus")


def run_dir_of(args, name: str, seed: int) -> Path:
    return Path(args.out) / "runs" / run_slug(name) / f"seed{seed}"


def record_path(args, name: str, seed: int) -> Path:
    return args.records / run_slug(name) / f"seed{seed}.json"


def data_recipe(args) -> dict[str, Any]:
    """What the demo dataset is written from (with the config's geometry, codec and beats, which the
    data module checks against the shards itself)."""
    return {"demo_seed": 0, "num_train": args.num_train, "num_val": 4, "num_test": args.num_test}


@functools.lru_cache(maxsize=None)
def row_config(config: Path, overlay_json: str) -> RunConfig:
    """The config with a row's overlay (given as JSON: a row is parsed once per process), as `vmas fit` reads it."""
    return load_config([config, json.loads(overlay_json)])


def run_recipe(args, config: Path, overlay: dict, seed: int) -> dict[str, Any]:
    """Everything that decides a run's result: the config with the row's overlay as `vmas fit` reads it
    (a digest of the parsed config's text, every setting with its value), the bytes of every weight
    file it names (`pretrained`), the overlay itself, seed, steps and data. A record is reused only
    for an identical recipe."""
    parsed = row_config(config, json.dumps(overlay, sort_keys=True))
    return {"config_sha256": hashlib.sha256(parsed.text.encode()).hexdigest()[:16],
            "weights_sha256": {path: file_digest(path) for path in sorted(pretrained_files(yaml.safe_load(parsed.text)))},
            "overlay": overlay, "seed": seed, "steps": args.steps, "data": data_recipe(args)}


def pretrained_files(config: Any) -> set[str]:
    """The `pretrained:` paths named anywhere in a config."""
    if isinstance(config, dict):
        found = {config["pretrained"]} if isinstance(config.get("pretrained"), str) else set()
        return found.union(*(pretrained_files(v) for v in config.values()))
    if isinstance(config, list):
        return set().union(*(pretrained_files(v) for v in config))
    return set()


def file_digest(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return None  # a hub id, or a file this machine lacks: the fit names it if it is needed


def recipe_differences(recorded: dict, wanted: dict) -> list[str]:
    """`key: recorded -> wanted` for each setting that differs (`setting_differences`, key by key)."""
    return [f"{key}: {old!r} -> {new!r}" for key, old, new in setting_differences(recorded, wanted)]


def read_record(path: Path, recipe: dict | None) -> dict[str, Any] | None:
    """A run's record if it exists (None otherwise); refused with one line when `recipe` is given and
    the record was made by another."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SystemExit(f"{path}: unreadable ablation record ({err})") from None
    if recipe is not None and (differences := recipe_differences(record.get("recipe", {}), recipe)):
        raise SystemExit(f"{path}: recorded with another recipe ({'; '.join(differences[:3])}): "
                         "use another --records (and --out) for another recipe")
    return record


def check_run_dir(run_dir: Path, recipe: dict) -> None:
    """A run folder holds one recipe's checkpoints: write it on first use, refuse to resume another's."""
    path = run_dir / "recipe.json"
    if path.is_file():
        if differences := recipe_differences(json.loads(path.read_text()), recipe):
            raise SystemExit(f"{run_dir}: checkpoints of another recipe ({'; '.join(differences[:3])}): "
                             "use another --out for another recipe")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(recipe, indent=2) + "\n")


def provenance(data_sha256: str, device: str) -> dict[str, Any]:
    """Where, when and on what bytes of data a record was made (not compared: the recipe is)."""
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {"commit": commit, "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu", "data_sha256": data_sha256}


def train_and_test(args, config: Path, name: str, overlay: dict, recipe: dict, data: Path) -> dict[str, Any] | None:
    """One row and seed: its record if it has one, else fit (resumed from its newest checkpoint when a
    previous call was stopped), test on the held-out clips and record: metrics.json plus `steps`,
    `seconds_per_step`, `recipe` and `provenance`. None when another process is making that run."""
    run_dir, path = run_dir_of(args, name, recipe["seed"]), record_path(args, name, recipe["seed"])
    try:
        with file_lock(run_dir.with_suffix(".lock"), wait=False):
            if (record := read_record(path, recipe)) is not None:
                return record
            with file_lock(data.with_suffix(".lock")):
                data_sha256 = prepare_data(args, config, data)  # once, and only when a run is still to be made
            return make_run(args, config, run_dir, path, overlay, recipe, data, data_sha256)
    except LockHeld:
        return None


def make_run(args, config: Path, run_dir: Path, path: Path, overlay: dict, recipe: dict, data: Path,
             data_sha256: str) -> dict[str, Any]:
    """Fit and test one run in `run_dir` and write its record to `path`."""
    check_run_dir(run_dir, recipe)
    overlay_file = run_dir / "overlay.yaml"
    overlay_file.write_text(yaml.safe_dump(overlay or {}))
    common = ["--config", str(config), "--config", str(overlay_file), "--data.root", str(data),
              "--trainer.default_root_dir", str(run_dir), "--trainer.enable_progress_bar", "false",
              "--trainer.accelerator", "gpu" if args.device == "cuda" else "cpu", "--trainer.devices", "1"]
    started = time.perf_counter()
    ckpt = newest_checkpoint(run_dir)
    if ckpt is None or trained_steps(ckpt) < args.steps:
        resume = ["--ckpt_path", str(ckpt)] if ckpt is not None else []
        # one validation batch at each of the config's validation intervals: what writes the checkpoints a
        # stopped benchmark resumes from (the project's exact kill-and-resume)
        run_vmas("fit", *common, "--trainer.max_steps", str(args.steps), "--seed_everything", str(recipe["seed"]),
                 "--trainer.limit_val_batches", "0" if args.quick else "1", "--model.num_audio_samples", "0",
                 "--trainer.log_every_n_steps", "1" if args.quick else "10", *resume)
        ckpt = newest_checkpoint(run_dir)
    fit_seconds = time.perf_counter() - started
    # --quick checks the pipeline: MV-Align on the model-rate frames (the source protocol's flow at the
    # native size is most of a test's time; tests/test_test_mv_align_source.py checks that protocol)
    quick = ["--model.evaluation.mv_align_source", "false"] if args.quick else []
    run_vmas("test", *common, "--model.evaluation.output_dir", str(run_dir / "test"),
             "--model.evaluation.save_audio", "false", *quick, "--ckpt_path", str(ckpt))
    record = json.loads((run_dir / "test" / METRICS_FILE).read_text())
    record["steps"] = trained_steps(ckpt)
    record["seconds_per_step"] = seconds_per_step(run_dir) or fit_seconds / max(1, record["steps"])
    record["recipe"], record["provenance"] = recipe, provenance(data_sha256, args.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "test" / CLIPS_FILE, path.with_suffix(".clips.csv"))
    path.write_text(json.dumps(record, indent=2) + "\n")  # last: a record is whole or absent
    return record


def prepare_data(args, config: Path, data: Path) -> str:
    """Write the demo dataset once (`data_recipe`; `dataset.json`, written last, marks it whole) and
    return its digest; refuse a folder written from another recipe."""
    marker = data / "dataset.json"
    if marker.is_file():
        dataset = json.loads(marker.read_text())
        if differences := recipe_differences(dataset["recipe"], data_recipe(args)):
            raise SystemExit(f"{data}: demo data of another recipe ({'; '.join(differences)}): use another --out")
        return dataset["sha256"]
    recipe = data_recipe(args)
    run_vmas("demo-data", "--config", str(config), "--seed", str(recipe["demo_seed"]), "--out", str(data),
             "--num-train", str(recipe["num_train"]), "--num-val", str(recipe["num_val"]),
             "--num-test", str(recipe["num_test"]), "--workers", str(args.data_workers))
    digest = data_digest(data)
    marker.write_text(json.dumps({"recipe": recipe, "sha256": digest}, indent=2) + "\n")
    return digest


def data_digest(data: Path) -> str:
    """SHA-256 of every split's shards and index, in order: whether two machines wrote the same data
    (a record's provenance; the recipe is what is compared)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in data.glob("*/*") if p.suffix in (".bin", ".json")):
        digest.update(path.relative_to(data).as_posix().encode())
        with open(path, "rb") as handle:
            while block := handle.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()[:16]


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The `last.ckpt` of the run's newest Lightning version (a resumed fit writes a new version)."""
    found = sorted(run_dir.glob("lightning_logs/version_*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def trained_steps(ckpt: Path) -> int:
    """The optimizer steps a checkpoint was trained for."""
    import torch

    return int(torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"])


def seconds_per_step(run_dir: Path) -> float | None:
    """Training wall time per step: the median over the intervals between logged steps in all the run's
    TensorBoard logs (one per fit, resumed fits included), so start-up, validation, a pause or a
    stop and resume do not count, and a busy stretch of the machine counts only if it lasts most of
    the run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    per_step = []
    for log_dir in sorted(run_dir.glob("lightning_logs/version_*")):
        events = EventAccumulator(str(log_dir))
        events.Reload()
        if "train/loss_ar" in events.Tags()["scalars"]:
            scalars = events.Scalars("train/loss_ar")
            per_step += [(b.wall_time - a.wall_time) / (b.step - a.step)
                         for a, b in zip(scalars, scalars[1:]) if b.step > a.step]
    return float(np.median(per_step)) if per_step else None


def summarise(values: list[float | None]) -> dict[str, Any]:
    """Mean and 95% t-interval half-width over seeds (None when a run did not measure it)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if len(finite) < 2:
        return {"mean": finite[0] if finite else None, "ci95": None, "values": values}
    mean, sem = float(np.mean(finite)), float(np.std(finite, ddof=1) / math.sqrt(len(finite)))
    return {"mean": mean, "ci95": float(stats.t.ppf(0.975, len(finite) - 1) * sem), "values": values}


def paired_differences(rows: dict[str, dict], pairs: list[tuple[str, str]]) -> dict[str, dict]:
    """For each `(before, after)` pair of rows: `after` minus `before`, seed by seed (a seed's runs share
    the model's initialisation and the data order), per metric: mean and 95% t-interval of the
    differences over the seeds where both rows finished. The claims of Table 5 are such steps."""
    differences = {}
    for above, name in pairs:
        differences[f"{name} vs {above}"] = {
            m: summarise([None if a is None or b is None else b - a
                          for a, b in zip(rows[above][m]["values"], rows[name][m]["values"])])
            for m in METRICS}
    return differences


def table(rows: dict[str, dict], reference: dict[str, dict], columns: tuple[str, ...], paper: dict | None = None) -> str:
    head = "| row | " + " | ".join(columns) + (" | paper FAD / KL / MV-Align |" if paper else " |")
    lines = [head, "|---" * (len(columns) + 1 + bool(paper)) + "|"]
    for name, values in reference.items():
        cells = [_fmt(values.get(c)) for c in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + (" | |" if paper else " |"))
    for name, summary in rows.items():
        seeds, finished = len(summary[columns[0]]["values"]), summary.get("seeds_finished")
        label = name if finished in (None, seeds) else f"{name} ({finished} of {seeds} seeds)"
        cells = []
        for c in columns:
            s = summary.get(c, {})
            cells.append("-" if s.get("mean") is None else _fmt(s["mean"]) + (f" ± {_fmt(s['ci95'])}" if s.get("ci95") is not None else ""))
        extra = f" | {' / '.join(map(str, paper[name]))} |" if paper and name in paper else (" | |" if paper else " |")
        lines.append(f"| {label} | " + " | ".join(cells) + extra)
    return "\n".join(lines)


def retrieval_chance(num_clips: int | None) -> str:
    """The table's footnote: recall@K of a random ranking of the test clips (the reference rows have no retrieval)."""
    if not num_clips:
        return ""
    return f"\n\nRetrieval among the {num_clips} test clips at chance: R@1 {1 / num_clips:.3f}, R@10 {min(10, num_clips) / num_clips:.3f}."


def first_value(runs: list[dict], key: str) -> Any:
    return next((run[key] for run in runs if key in run), None)


def _fmt(value: float | None) -> str:
    return f"{value:.3g}" if value is not None and abs(value) >= 100 else format_cell(value, 3)


def pack_records(records: Path, pack: Path) -> int:
    """Every record under `records` with its clips.csv, in one JSON file (`{row/seedK: {record, clips_csv}}`)."""
    packed = {path.relative_to(records).with_suffix("").as_posix(): {
        "record": json.loads(path.read_text()), "clips_csv": path.with_suffix(".clips.csv").read_text()}
        for path in sorted(records.glob("*/seed*.json"))}
    pack.parent.mkdir(parents=True, exist_ok=True)
    pack.write_text(json.dumps(packed) + "\n")
    return len(packed)


def unpack_records(pack: Path, records: Path) -> int:
    """The records of a `pack_records` file written under `records`, each checked against a record
    already there (another recipe: refused, as `read_record` refuses it)."""
    for run, entry in json.loads(pack.read_text()).items():
        path = records / f"{run}.json"
        if path.is_file():
            read_record(path, entry["record"]["recipe"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".clips.csv").write_text(entry["clips_csv"])
        path.write_text(json.dumps(entry["record"], indent=2) + "\n")  # last: a record is whole or absent
    return len(json.loads(pack.read_text()))


def run_jobs(args, argv: list[str]) -> None:
    """`--jobs N`: N copies of this benchmark, each with cores / N threads; they share the runs (a run
    folder's lock), the data (written once) and the records. Returns when all have ended."""
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    jobs = [subprocess.Popen([sys.executable, __file__, *argv, "--jobs", "1", "--job"], env=env) for _ in range(args.jobs)]
    if failed := [code for code in (job.wait() for job in jobs) if code != 0]:
        raise SystemExit(f"{len(failed)} of {args.jobs} ablation jobs failed (exit codes {failed}): see their output above")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.unpack:
        print(f"{unpack_records(Path(args.unpack), args.records)} records from {args.unpack} in {args.records}", file=sys.stderr)
        args.report_only = True
    if args.jobs > 1 and not args.report_only:
        run_jobs(args, argv)
        args.report_only = True  # the jobs made every run: report them
    out = Path(args.out)
    config = Path(args.config)
    base = load_config(config)
    data = out / "data"
    results: dict[str, dict[int, dict]] = {}
    for seed in args.seeds:  # seed-major: an interrupted benchmark has every row of every table at a seed
        for number in args.tables:
            for name, overlay in table_rows(number, base).items():
                run = SAME_RUN.get(name, name)
                runs = results.setdefault(run, {})
                if seed not in runs:
                    recipe = run_recipe(args, config, overlay, seed)
                    runs[seed] = (read_record(record_path(args, run, seed), recipe) if args.report_only
                                  else train_and_test(args, config, run, overlay, recipe, data))
    if args.job:
        return {}
    finished = [run for runs in results.values() for run in runs.values() if run is not None]
    if not finished:
        raise SystemExit(f"no finished run recorded under {args.records}")
    trained_steps = sorted({run.get("steps") for run in finished}, key=str)  # one value unless recipes were mixed
    report: dict[str, Any] = {"config": str(config), "records": str(args.records), "seeds": args.seeds, "steps": trained_steps, "quick": args.quick,
                              "num_test_clips": first_value(finished, "num_clips"), "tables": {}}
    first = finished[0]
    reference = {row.replace("_", " "): {m: first["reference_rows"][row].get(m) for m in METRICS}
                 for row in ("ground_truth", "another_clip") if row in first.get("reference_rows", {})}
    markdown = []
    for number in args.tables:
        summaries = {}
        for name, overlay in table_rows(number, base).items():
            runs = results[SAME_RUN.get(name, name)]
            runs = [runs[seed] or {} for seed in args.seeds]
            summaries[name] = {m: summarise([r.get(m) for r in runs]) for m in METRICS}
            summaries[name]["seeds_finished"] = sum(bool(r) for r in runs)
            if number == "6":
                summaries[name]["seconds_per_step"] = summarise([r.get("seconds_per_step") for r in runs])
                row_model = row_config(config, json.dumps(overlay, sort_keys=True)).model
                summaries[name]["encoder_gflops"] = {"mean": profile(row_model)["encoder"]["gflops"], "ci95": None}
        columns = METRICS + (("seconds_per_step", "encoder_gflops") if number == "6" else ())
        report["tables"][f"table{number}"] = {"rows": summaries, "reference": reference}
        title = {"lambda": "Beat weighting's lambda (not in the paper)",
                 "arch": "Beat weighting by decoder architecture (not in the paper)"}.get(number, f"Table {number}")
        markdown.append(f"### {title}\n\n" + table(summaries, reference, columns, PAPER_TABLE5 if number == "5" else None)
                        + retrieval_chance(report["num_test_clips"]))
        if number in ("5", "lambda", "arch"):
            names = list(summaries)
            pairs = {"5": list(zip(names, names[1:])), "lambda": [(names[0], name) for name in names[1:]],
                     "arch": list(TABLE_ARCH_PAIRS)}[number]
            how = {"5": "each row minus the row above", "lambda": "each row minus the first",
                   "arch": "beat weighting minus none, per decoder"}[number]
            differences = paired_differences(summaries, pairs)
            report["tables"][f"table{number}"]["paired_differences"] = differences
            markdown.append(f"### {title}, paired by seed ({how})\n\n" + table(differences, {}, METRICS))
    report["wall_s"] = round(time.perf_counter() - started, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.json").write_text(json.dumps(report, indent=2))
    (out / "ablation.md").write_text("\n\n".join(markdown) + "\n")
    print("\n\n".join(markdown), file=sys.stderr)
    if args.pack:
        report["packed"] = {"file": args.pack, "records": pack_records(args.records, Path(args.pack))}
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
