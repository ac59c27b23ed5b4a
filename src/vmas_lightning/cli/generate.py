"""`vmas generate`: music for one video or a folder of videos, as a wav and a muxed copy of the video.

    vmas generate --ckpt last.ckpt --video clip.mp4 --out out/clip [--plot out/clip.png]
    vmas generate --ckpt last.ckpt --input-dir videos/ --out-dir out/
    vmas generate --ckpt last.ckpt --video clip.mp4 --out out/clip --text "fast 140 bpm, hollow square-wave plucks"

Batch mode reports every file that fails (and why), goes on with the rest, writes
`<out-dir>/report.json`, and exits 0 when at least one video succeeded (2 when none did).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser

from vmas_lightning.cli import writable_folder
from vmas_lightning.config_file import add_config_argument, stacked_paths
from vmas_lightning.video_io import VIDEO_SUFFIXES
from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.files import atomic_write_text
from vmas_lightning.config import DecodeStep, GenerationConfig
from vmas_lightning.generation.pipeline import Generation, GenerationOptions, muxed_suffix

HELP = "Generate music for a video (or a folder of videos): a 32 kHz wav and the video with it muxed in."
# `GenerationConfig` fields that `vmas generate` takes as flags of the same name (`use_cache` is `--no-cache`).
GENERATION_FLAGS = tuple(f.name for f in dataclasses.fields(GenerationConfig) if f.name != "use_cache")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas generate", description=HELP)
    parser.add_argument("--ckpt", required=True, help="VMASModule checkpoint (EMA weights used when present).")
    parser.add_argument("--video", help="One input video (any container, rate, size or rotation).")
    parser.add_argument("--out", help="Output stem (writes <stem>.wav and <stem>.<container>) or an existing folder.")
    parser.add_argument("--input-dir", help="Batch mode: every video file in this folder.")
    parser.add_argument("--out-dir", help="Batch mode: output folder (<name>.wav, <name>.<container>, report.json).")
    parser.add_argument("--batch-size", type=int, default=1, help="Batch mode: clips of the same length generated "
                        "together (with --seed, each file's music is what it gets alone; on a GPU up to rounding).")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available.")
    parser.add_argument("--top-k", type=Optional[int], default=None, help="Override the checkpoint's top-k (0: off).")
    parser.add_argument("--top-p", type=Optional[float], default=None, help="Override top-p (0: off).")
    parser.add_argument("--temperature", type=Optional[float], default=None, help="Override the temperature (0: greedy).")
    parser.add_argument("--cfg-scale", type=Optional[float], default=None, help="Override the video's guidance scale "
                        "(1: off; with --text, 0: music from the text alone).")
    parser.add_argument("--text", default=None, help="Describe the music in words (a model trained with model.text): its style "
                        "follows the text, its timing the video; batch mode: for every video.")
    parser.add_argument("--text-cfg-scale", "--text-guidance", type=Optional[float], default=None,
                        help="Override the text's guidance scale (generation.text_cfg_scale; 0: the text is ignored).")
    parser.add_argument("--window-s", type=Optional[float], default=None, help="Seconds per window (default: training length).")
    parser.add_argument("--overlap-s", type=Optional[float], default=None, help="Seconds of music carried into the next window.")
    parser.add_argument("--seed", type=Optional[int], default=None, help="Seed: same seed, same music.")
    parser.add_argument("--static-cache", type=Optional[bool], default=None,
                        help="Preallocated key/value cache (fixed shapes; default: the checkpoint's generation.static_cache).")
    parser.add_argument("--decode-step", type=Optional[DecodeStep], default=None,
                        help="eager, cuda_graph or torch_compile: how each decode step runs (needs the static cache; "
                        "default: the checkpoint's generation.decode_step).")
    parser.add_argument("--no-cache", action="store_true", help="Disable the decoder's key/value cache (slow; for checks).")
    parser.add_argument("--keep-original-audio", action="store_true", help="Keep the source's audio as a second stream.")
    parser.add_argument("--no-video", action="store_true", help="Write only the wav, no muxed video.")
    parser.add_argument("--plot", help="PNG of waveform, flow, music beats and video beats (batch mode: a folder); prints the video beats and MV-Align.")
    parser.add_argument("--plot-spectrogram", action="store_true", help="Plot a spectrogram instead of the waveform.")
    add_config_argument(parser, "its data.beats set the --plot beats (as vmas beats --config; without one: the defaults)",
                        flag="--beats-config")
    return parser


def output_stem(out: str, video: Path) -> Path:
    """`--out`: an existing folder (or one ending in '/') gets `<video stem>`; else a stem (a .wav/.mp4 suffix is dropped)."""
    path = Path(out)
    if path.is_dir() or out.endswith(("/", "\\")):
        return path / video.stem
    return path.with_suffix("") if path.suffix.lower() in VIDEO_SUFFIXES | {".wav"} else path


def check_outputs(video: Path, stem: Path, no_video: bool, flag: str) -> None:
    """One line, before any generation, when the muxed copy would replace its own input."""
    from vmas_lightning.generation.mux import add_extension

    target = add_extension(stem, muxed_suffix(video))
    if not no_video and target.resolve() == video.resolve():
        raise VMASError(f"{target}: the output would overwrite the input video; choose another {flag}")


def generation_options(cfg) -> GenerationOptions:
    """`vmas generate`'s parsed flags as `GenerationOptions`; a flag left unset keeps the checkpoint's setting."""
    overrides = {name: getattr(cfg, name) for name in GENERATION_FLAGS if getattr(cfg, name) is not None}
    if cfg.no_cache:  # no cache of either kind, unless asked for in the same breath (then rejected)
        overrides = {"static_cache": False, "decode_step": "eager", **overrides, "use_cache": False}
    return GenerationOptions(ckpt=cfg.ckpt, device=cfg.device, generation=overrides, keep_original_audio=cfg.keep_original_audio,
                             write_video=not cfg.no_video, plot_spectrogram=cfg.plot_spectrogram, beats_config=stacked_paths(cfg.beats_config),
                             text=cfg.text)


def run(cfg) -> int:
    single, batch = cfg.video is not None, cfg.input_dir is not None
    if single == batch:
        raise VMASError("give either --video FILE --out OUT or --input-dir DIR --out-dir DIR")
    if single and cfg.out is None:
        raise VMASError("--video needs --out (an output stem or folder)")
    if batch and cfg.out_dir is None:
        raise VMASError("--input-dir needs --out-dir")
    if cfg.batch_size < 1 or (single and cfg.batch_size != 1):
        raise VMASError(f"--batch-size {cfg.batch_size}: give a count >= 1, with --input-dir (one --video is one clip)")
    if single:
        video = Path(cfg.video)
        if video.is_dir():
            raise VMASError(f"--video {video}: a folder; for every video in it use --input-dir {video} --out-dir OUT")
        if not video.is_file():
            raise InputFileError(video, "no such file")
        stem = output_stem(cfg.out, video)
        writable_folder(stem.parent, "--out")
        check_outputs(video, stem, cfg.no_video, "--out")
        if cfg.plot:
            writable_folder(Path(cfg.plot).parent, "--plot")
        result = Generation(generation_options(cfg))(video, stem, Path(cfg.plot) if cfg.plot else None)
        _print_result(result)
        return 2 if "problems" in result else 0
    return _run_batch(cfg)


def _run_batch(cfg) -> int:
    input_dir, out_dir = Path(cfg.input_dir), Path(cfg.out_dir)
    if not input_dir.is_dir():
        raise VMASError(f"--input-dir {input_dir}: not a folder")
    files = sorted(p for p in input_dir.iterdir() if p.is_file())
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    if not videos:
        raise VMASError(f"--input-dir {input_dir}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
    writable_folder(out_dir, "--out-dir")
    for video in videos:
        check_outputs(video, out_dir / video.stem, cfg.no_video, "--out-dir")
    if cfg.plot:
        writable_folder(cfg.plot, "--plot")
    generate = Generation(generation_options(cfg))
    # Files without a video suffix are listed, not tried (give one with --video to try it).
    report = {"succeeded": [], "failed": [], "ignored": [str(p) for p in files if p not in videos]}
    jobs = ((video, out_dir / video.stem, Path(cfg.plot) / f"{video.stem}.png" if cfg.plot else None) for video in videos)
    order = {str(video): index for index, video in enumerate(videos)}
    for index, (video, result) in enumerate(generate.batches(jobs, cfg.batch_size), 1):
        print(f"[{index}/{len(videos)}] {video.name}", file=sys.stderr)
        if isinstance(result, Exception):
            print(f"vmas generate: skipped: {result}", file=sys.stderr)
            report["failed"].append({"video": str(video), "error": str(result)})
        else:
            _print_result(result)
            if "problems" in result:  # the music is kept; the item is reported as failed
                report["failed"].append({"video": str(video), "error": "; ".join(result["problems"]), "kept": result})
            else:
                report["succeeded"].append(result)
        for kind in ("succeeded", "failed"):  # in the folder's order, whatever order batches finish in
            report[kind].sort(key=lambda item: order[item["video"]])
        atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")  # as it goes
    print(f"{len(report['succeeded'])} of {len(videos)} videos done, {len(report['failed'])} failed, "
          f"{len(report['ignored'])} other files ignored; report: {out_dir / 'report.json'}")
    return 0 if report["succeeded"] else 2


def _print_result(result: dict) -> None:
    line = f"{result['video']}: {result['seconds']} s of music in {result['generation_s']} s -> {result['wav']}"
    if "video_out" in result:
        line += f", {result['video_out']}"
    if "plot" in result:
        line += f"; plot {result['plot']}"
    if "mv_align" in result:
        line += f"; MV-Align {result['mv_align']:.3f}"
    if "video_beats" in result:
        line += f"\n  video beats ({len(result['video_beats'])}): " + " ".join(f"{t:.2f}" for t in result["video_beats"])
    print(line)
    for problem in result.get("problems", []):  # the music above is kept
        print(f"vmas generate: {result['video']}: {problem}", file=sys.stderr)
