"""`vmas demo-data`: synthesise the small paired video-music dataset of the CPU demo."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser
from tqdm.auto import tqdm

from vmas_lightning.data.demo import VideoForm, write_demo_dataset
from vmas_lightning.data.shards import DataConfig

HELP = "Synthesise demo clips whose cuts land on musical onsets and whose look decides the music."


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas demo-data", description=HELP)
    parser.add_argument("--out", required=True, help="Dataset folder to write (train/, val/, test/).")
    parser.add_argument("--config", default="configs/tiny.yaml", help="Training config: clip geometry, codec, beats.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=64)
    parser.add_argument("--num-val", type=int, default=16)
    parser.add_argument("--num-test", type=int, default=16)
    parser.add_argument("--test-video", type=Optional[VideoForm], default=VideoForm(),
                        help="How every test clip is also written as a video file (<out>/videos/test/<id>.mp4, "
                             "named as the clip's source): as an upload, not at the model's rate and size; null: none.")
    return parser


def run(cfg) -> int:
    config = DataConfig.from_yaml(cfg.config)
    counts = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    with tqdm(total=sum(counts.values()), unit="clip", desc="demo-data") as bar:
        written = write_demo_dataset(cfg.out, config, counts, cfg.seed, cfg.test_video, progress=bar.update)
    print(json.dumps({"out": str(Path(cfg.out)), "clips": written}))
    return 0
