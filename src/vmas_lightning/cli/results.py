"""`vmas results`: the metrics of one or more `vmas test` runs side by side, under their reference rows."""
from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser

from vmas_lightning.config_file import read_config
from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.metrics.suite import METRICS_FILE, results_table

HELP = "Print the metrics of vmas test runs side by side (with the ground-truth and chance rows)."


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas results", description=HELP)
    parser.add_argument("runs", nargs="+", help=f"{METRICS_FILE} files or the folders holding them.")
    parser.add_argument("--names", default=None, help="Comma-separated row names (default: the folder names).")
    return parser


def read_metrics(path: str | Path) -> dict:
    """A run's `metrics.json` (the file or its folder); one line when unreadable or not one."""
    path = Path(path)
    file = path / METRICS_FILE if path.is_dir() else path
    metrics = read_config(file, f"{METRICS_FILE} of vmas test")  # YAML reads JSON
    if not metrics:
        raise InputFileError(file, f"empty, not a {METRICS_FILE} of vmas test")
    return metrics


def run(cfg) -> int:
    metrics = [read_metrics(path) for path in cfg.runs]
    names = cfg.names.split(",") if cfg.names else [Path(p).name if Path(p).is_dir() else Path(p).parent.name for p in cfg.runs]
    if len(names) != len(metrics):
        raise VMASError(f"--names has {len(names)} names for {len(metrics)} runs")
    if len(set(names)) != len(names):
        raise VMASError(f"two runs have the same name ({', '.join(names)}): give each its own with --names")
    print(results_table(metrics[0], names[0], others=dict(zip(names[1:], metrics[1:]))))
    return 0
