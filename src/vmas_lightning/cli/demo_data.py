"""`vmas demo-data`: synthesise the small paired video-music dataset of the CPU demo."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser
from tqdm.auto import tqdm

from vmas_lightning.data.demo import VideoForm, write_demo_dataset
from vmas_lightning.config_file import add_config_argument, stacked_paths
from vmas_lightning.data.shards import ShardConfig
from vmas_lightning.errors import VMASError

HELP = "Synthesise demo clips whose cuts land on musical onsets and whose look decides the music."
DEFAULT_CONFIG = "configs/tiny.yaml"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas demo-data", description=HELP)
    parser.add_argument("--out", required=True, help="Dataset folder to write (train/, val/, test/).")
    add_config_argument(parser, "its clip geometry, codec and beats", default=DEFAULT_CONFIG)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=64)
    parser.add_argument("--num-val", type=int, default=16)
    parser.add_argument("--num-test", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1,
                        help="Processes that synthesise and annotate clips (the same files as one writes).")
    parser.add_argument("--test-video", type=Optional[VideoForm], default=VideoForm(),
                        help="How every test clip is also written as a video file (<out>/videos/test/<id>.mp4, "
                             "named as the clip's source): as an upload, not at the model's rate and size; null: none.")
    return parser


def run(cfg) -> int:
    if cfg.workers < 1:
        raise VMASError(f"--workers must be >= 1, got {cfg.workers}")
    config = ShardConfig.from_configs(stacked_paths(cfg.config, DEFAULT_CONFIG))
    counts = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    with tqdm(total=sum(counts.values()), unit="clip", desc="demo-data") as bar:
        written = write_demo_dataset(cfg.out, config, counts, cfg.seed, cfg.test_video, progress=bar.update,
                                     workers=cfg.workers)
    print(json.dumps({"out": str(Path(cfg.out)), "clips": written}))
    return 0
