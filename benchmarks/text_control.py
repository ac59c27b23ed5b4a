"""Text and video together: does the music's style follow the words while its notes stay on the video's cuts?

    python benchmarks/text_control.py --ckpt checkpoints/demo/model.ckpt [--seed 4 --num-clips 24] [--markdown]

Each held-out demo clip (`data.demo`, a seed the model never saw) is written as `vmas demo-data` writes
its test videos (`VideoForm`: H.264 CRF 23, 30 fps 256x256), read back by `vmas generate`'s own code
(`Generation.read`) and given music by `Generation.compose` with the clip's seed, four ways:

- `video`: no text (the video-only path);
- `video_matching_text`: the clip's own caption (words for its style's timbre, key and tempo);
- `video_contradicting_text`: the caption of another style (each clip its own, the styles in turn);
- `text_only`: that other style's caption with the video's guidance at 0 (`cfg_scale 0`: the video is not run),
  with its own `--text-only-text-cfg-scale` and `--text-only-temperature` (default: the checkpoint's).

Each row: style accuracy (the demo's `demo_style` classifier) against the video's style and against
the contradicting caption's style (for `video`, chance: the model was told nothing of that style),
onset F1 against the clip's cuts (50 ms) and against another clip's cuts (the chance level of F1),
onsets per clip (truth alongside). `truth` scores the clips' own music. `passes` checks the issue's
bar: contradicting text style >= 0.8 against the caption and onset F1 >= 0.5; text only style >= 0.8
against the caption.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from vmas_lightning.data.demo import STYLES, VideoForm, clip_caption, render_clip_frames, synthesize_clip
from vmas_lightning.generation.pipeline import Generation, GenerationOptions
from vmas_lightning.generation.sampling import clip_seed
from vmas_lightning.metrics.synthetic import SyntheticTaskMetrics
from vmas_lightning.registry import AUDIO_CLASSIFIERS
from vmas_lightning.video_io import write_video

SPLIT = "test"
ROWS = {  # key: what the table says
    "video": "video only",
    "video_matching_text": "video + its own caption",
    "video_contradicting_text": "video + another style's caption",
    "text_only": "another style's caption only (video guidance 0)",
}


def other_style(style: str, index: int) -> str:
    """The contradicting caption's style for clip `index`: each of the three other styles in turn."""
    names = [s.name for s in STYLES]
    return names[(names.index(style) + 1 + index % (len(names) - 1)) % len(names)]


def passes(rows: dict) -> dict[str, bool]:
    contradicting, text_only = rows["video_contradicting_text"], rows["text_only"]
    return {"video_contradicting_text": contradicting["style_accuracy_caption"] >= 0.8 and contradicting["onset_f1"] >= 0.5,
            "text_only": text_only["style_accuracy_caption"] >= 0.8}


def main(argv: Optional[list[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="checkpoints/demo/model.ckpt")
    parser.add_argument("--classifier", default="checkpoints/demo/style_net.pt", help="demo_style network.")
    parser.add_argument("--seed", type=int, default=4, help="Demo seed of the held-out clips (the demo model: 0 trained, 1-3 looked at).")
    parser.add_argument("--num-clips", type=int, default=24)
    parser.add_argument("--rows", default=",".join(ROWS), help=f"Comma-separated rows to run: {', '.join(ROWS)}.")
    parser.add_argument("--cfg-scale", type=float, default=None, help="Override the checkpoint's video guidance.")
    parser.add_argument("--text-cfg-scale", type=float, default=None, help="Override the checkpoint's text guidance.")
    parser.add_argument("--text-only-temperature", type=float, default=None,
                        help="Sampling temperature of the text_only row (default: the checkpoint's).")
    parser.add_argument("--text-only-text-cfg-scale", type=float, default=None,
                        help="Text guidance of the text_only row (default: the run's).")
    parser.add_argument("--markdown", action="store_true", help="Also print the table (stderr).")
    args = parser.parse_args(argv)
    rows = args.rows.split(",")
    if unknown := [row for row in rows if row not in ROWS]:
        parser.error(f"--rows: unknown {', '.join(unknown)}; known: {', '.join(ROWS)}")

    started = time.time()
    overrides = {key: value for key, value in (("cfg_scale", args.cfg_scale), ("text_cfg_scale", args.text_cfg_scale))
                 if value is not None}
    generation = Generation(GenerationOptions(ckpt=args.ckpt, device="cpu", generation=overrides))
    seq, config = generation.sequence, generation.config
    classifier = AUDIO_CLASSIFIERS.build({"name": "demo_style", "pretrained": args.classifier})
    clips = [synthesize_clip(args.seed, SPLIT, index, seq) for index in range(args.num_clips)]
    metas = [clip["meta"] for clip in clips]
    contradicting = [{**meta, "style": other_style(meta["style"], index)} for index, meta in enumerate(metas)]
    others = metas[1:] + metas[:1]  # another clip's cuts: the chance level of onset F1
    text_only_config = dataclasses.replace(
        config, cfg_scale=0.0,
        temperature=config.temperature if args.text_only_temperature is None else args.text_only_temperature,
        text_cfg_scale=config.text_cfg_scale if args.text_only_text_cfg_scale is None else args.text_only_text_cfg_scale)
    result: dict = {"ckpt": args.ckpt, "seed": args.seed, "num_clips": args.num_clips, "generation": dataclasses.asdict(config),
                    "text_only_generation": dataclasses.asdict(text_only_config), "form": dataclasses.asdict(VideoForm()),
                    "rows": {}}

    def score(audio: list[torch.Tensor]) -> dict:
        by_video, by_caption, control = SyntheticTaskMetrics(classifier), SyntheticTaskMetrics(classifier), SyntheticTaskMetrics()
        for wav, meta, against, other in zip(audio, metas, contradicting, others):
            by_video.update(wav, seq.sample_rate, [meta])
            by_caption.update(wav, seq.sample_rate, [against])
            control.update(wav, seq.sample_rate, [other])
        values = {k: round(float(v), 4) for k, v in by_video.compute().items()}
        values["style_accuracy_caption"] = round(float(by_caption.compute()["style_accuracy"]), 4)
        values["onset_f1_other_clip"] = round(float(control.compute()["onset_f1"]), 4)
        return values

    result["truth"] = score([torch.from_numpy(clip["audio"])[None, None] for clip in clips])
    form = VideoForm()
    with tempfile.TemporaryDirectory() as scratch:
        frames = []
        for index, clip in enumerate(clips):  # each clip as `vmas demo-data` writes a test video, read as `vmas generate` reads it
            path = write_video(Path(scratch) / f"{clip['id']}.mp4", render_clip_frames(args.seed, SPLIT, index, seq.duration_s, form.fps, form.size),
                               form.fps, clip["audio"], seq.sample_rate, codec=form.codec, options={"crf": str(form.crf)})
            frames.append(generation.read(path).frames)
    for row in rows:
        audio = []
        for index, clip in enumerate(clips):
            text, row_config = None, config
            if row == "video_matching_text":
                text = clip_caption(args.seed, SPLIT, index)
            elif row in ("video_contradicting_text", "text_only"):
                text = clip_caption(args.seed, SPLIT, index, contradicting[index]["style"])
            if row == "text_only":
                row_config = text_only_config
            music = generation.compose(frames[index], seq.duration_s, row_config, seeds=[clip_seed(config.seed, clip["id"])],
                                       progress=False, text=text)
            audio.append(torch.from_numpy(music[: seq.num_samples])[None, None])
        result["rows"][row] = score(audio)
        print(f"{row}: {json.dumps(result['rows'][row])}", file=sys.stderr, flush=True)
    if {"video_contradicting_text", "text_only"} <= set(result["rows"]):
        result["passes"] = passes(result["rows"])
    result["seconds"] = round(time.time() - started, 1)
    result["threads"] = torch.get_num_threads()
    if args.markdown:
        print(markdown(result), file=sys.stderr)
    print(json.dumps(result, indent=1))
    return result


def markdown(result: dict) -> str:
    """The rows as a table (RESULTS.md)."""
    lines = ["| condition | style acc vs video's style | style acc vs the other caption's style | onset F1 vs cuts | "
             "F1 vs another clip's cuts | onsets/clip (truth) |", "|---|---|---|---|---|---|"]
    truth = result["truth"]
    lines.append(f"| the clips' own music | {truth['style_accuracy']:.2f} | {truth['style_accuracy_caption']:.2f} | "
                 f"{truth['onset_f1']:.2f} | {truth['onset_f1_other_clip']:.2f} | {truth['onsets_per_clip']:.1f} "
                 f"({truth['true_onsets_per_clip']:.1f}) |")
    for row, v in result["rows"].items():
        lines.append(f"| {ROWS[row]} | {v['style_accuracy']:.2f} | {v['style_accuracy_caption']:.2f} | {v['onset_f1']:.2f} | "
                     f"{v['onset_f1_other_clip']:.2f} | {v['onsets_per_clip']:.1f} ({v['true_onsets_per_clip']:.1f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
