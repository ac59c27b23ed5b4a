"""`vmas beats`: the music beats, video beats and overlaps the training loss sees for one video.

    vmas beats --video clip.mp4 [--audio music.wav] [--json] [--plot beats.png] [--config configs/vmas.yaml]

Flow is computed on the video's consecutive frames (at its own rate, or `data.beats.flow_fps`)
at the training frame size (`model.sequence` of `--config`, else the defaults: 224 px), the same
way `vmas prepare` does, and beats with `data.beats` of `--config` (else `BeatConfig()` defaults). Times are the starts of the 20 ms token steps that carry a beat, in
seconds. A video without a soundtrack (and no `--audio`) still gets its video beats.

Beside the overlap share it reports two scores against a null of the same music circularly shifted
in time, each as a z-score and a percentile: `alignment` (`beats.shift_alignment`), the overlap
share of the music beats, and `onset_alignment` (`beats.onset_alignment`), the music's onset
strength at the video beats, which tells a video cut on any onsets (strong or weak) from the same
music shifted by a beat or from unrelated music (benchmarks/RESULTS.md, "Beats on real footage").
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from jsonargparse import ArgumentParser

from vmas_lightning.beats import (
    BeatConfig,
    FlowSeries,
    beat_times,
    beats_at_token_rate,
    build_plugin,
    onset_alignment,
    onset_strength_curve,
    shift_alignment,
    video_flow,
)
from vmas_lightning.beats.plot import plot_beats
from vmas_lightning.cli import writable_folder
from vmas_lightning.config_file import add_config_argument, load_config
from vmas_lightning.errors import InputFileError
from vmas_lightning.registry import ONSET_DETECTORS
from vmas_lightning.sequence import SequenceConfig

HELP = "Show a video's music beats, video beats (optical flow) and their overlaps, in seconds."


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas beats", description=HELP)
    parser.add_argument("--video", required=True, help="Input video (its soundtrack gives the music beats).")
    parser.add_argument("--audio", help="Music file to use instead of the video's own soundtrack.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
    parser.add_argument("--plot", help="Write a PNG of flow magnitude, video beats and music onsets on one time axis.")
    add_config_argument(parser, "its model.sequence and data.beats (without one: the defaults)")
    return parser


def beat_settings(paths: Optional[Sequence[str]]) -> tuple[SequenceConfig, BeatConfig]:
    """`model.sequence` and `data.beats` of a stack of vmas config files (the defaults without one)."""
    if not paths:
        return SequenceConfig(), BeatConfig()
    run = load_config(paths, trainer=False)
    return run.model.sequence, run.data.beats


def read_music(video: str, audio: Optional[str], sample_rate: int) -> Optional[np.ndarray]:
    """The `--audio` file, else the video's soundtrack; None when the video has no audio track."""
    from vmas_lightning.video_io import NO_AUDIO_TRACK, read_audio

    if audio is not None:
        return read_audio(audio, sample_rate)
    try:
        return read_audio(video, sample_rate)
    except InputFileError as err:
        if err.problem == NO_AUDIO_TRACK:
            return None
        raise


def analyse(
    video: str, audio: Optional[str], sequence: SequenceConfig, config: BeatConfig
) -> tuple[dict[str, Any], FlowSeries, SequenceConfig]:
    """What `vmas beats` reports for one video (times in seconds, flow in pixels per frame pair),
    its flow and the clip's geometry (the whole video)."""
    flow = video_flow(video, config, sequence.frame_size)
    sequence = sequence.with_duration(flow.duration_s)
    wav = read_music(video, audio, sequence.sample_rate)
    onsets = np.zeros(0) if wav is None else build_plugin(ONSET_DETECTORS, config.onset_detector)(wav, sequence.sample_rate)
    beats = beats_at_token_rate(onsets, flow, sequence, config)
    soundtrack = wav is not None
    times = beat_times(beats, sequence.token_rate)
    report = {
        "video": video,
        "audio": audio if audio is not None else (video if soundtrack else None),
        "soundtrack": soundtrack,
        "duration_s": round(sequence.duration_s, 3),
        "flow_fps": round(flow.fps, 3),
        "token_rate": sequence.token_rate,
        "music_beats": times["music_beats"] if soundtrack else None,
        "video_beats": times["video_beats"],
        "overlaps": times["overlaps"] if soundtrack else None,
        "overlap_share": round(float(beats["overlap"].sum() / max(1.0, beats["music_beats"].sum())), 3) if soundtrack else None,
        "alignment": alignment_report(beats, config) if soundtrack else None,
        "onset_alignment": onset_alignment_report(wav, beats, sequence, config) if soundtrack else None,
        "flow": {"mean": round(float(flow.magnitude.mean()), 4), "max": round(float(flow.magnitude.max()), 4),
                 "peak_s": round(float(flow.times[flow.magnitude.argmax()]), 3)},
        "config": dataclasses.asdict(config),
    }
    return report, flow, sequence


def alignment_report(beats: dict[str, np.ndarray], config: BeatConfig) -> dict[str, Optional[float]]:
    """`shift_alignment` of a clip's beats, rounded for the report."""
    return _rounded(shift_alignment(beats["music_beats"], beats["video_beats"], config.match_window))


def onset_alignment_report(wav: np.ndarray, beats: dict[str, np.ndarray], sequence: SequenceConfig,
                           config: BeatConfig) -> dict[str, Optional[float]]:
    """`onset_alignment` of a clip's video beats with its music's onset strength, rounded for the report."""
    video = beats["video_beats"]
    strength = onset_strength_curve(wav, sequence.sample_rate, video.size, sequence.token_rate)
    return _rounded(onset_alignment(strength, video, config.onset_match_window))


def _rounded(scores: dict[str, Optional[float]]) -> dict[str, Optional[float]]:
    """An alignment score's numbers to 3 decimals for the report (None stays None)."""
    return {key: None if value is None else round(value, 3) for key, value in scores.items()}


def plot_title(report: dict[str, Any]) -> str:
    """The beat plot's title: the video's name, whether it has a soundtrack, the two alignment z-scores."""
    title = Path(report["video"]).name + ("" if report["soundtrack"] else " (no soundtrack)")
    scores = [f"{label} z {report[key]['z']:+.2f}"
              for key, label in (("alignment", "beats"), ("onset_alignment", "onsets"))
              if report.get(key) and report[key]["z"] is not None]
    if scores:
        title += "  |  vs. shifted music: " + ", ".join(scores)
    return title


def alignment_line(alignment: dict[str, Optional[float]]) -> str:
    """The text line of the shift-null alignment score."""
    if alignment["share"] is None:
        return "alignment vs. shifted music: none (no music beats or no video beats)"
    z = "n/a (every shift scores the same)" if alignment["z"] is None else f"{alignment['z']:+.2f}"
    return (f"alignment vs. the music circularly shifted: z {z}, above {alignment['percentile']:.0f}% of shifts "
            f"(overlap share {alignment['share']:.0%}, shifts {alignment['null_mean']:.0%} +- {alignment['null_std']:.0%})")


def onset_alignment_line(alignment: dict[str, Optional[float]], window_s: float) -> str:
    """The text line of the onset-strength alignment score."""
    if alignment["strength"] is None:
        return "onset alignment vs. shifted music: none (no video beats or silent music)"
    z = "n/a (every shift scores the same)" if alignment["z"] is None else f"{alignment['z']:+.2f}"
    return (f"onset alignment vs. the music circularly shifted: z {z}, above {alignment['percentile']:.0f}% of shifts "
            f"(onset strength within {window_s:.2f} s of the video beats {alignment['strength']:.2f} x that of "
            f"random steps, shifts {alignment['null_mean']:.2f} +- {alignment['null_std']:.2f})")


def run(cfg) -> int:
    if cfg.plot:
        writable_folder(Path(cfg.plot).parent, "--plot")
    sequence, config = beat_settings(cfg.config)
    report, flow, clip = analyse(cfg.video, cfg.audio, sequence, config)
    if cfg.plot:
        report["plot"] = str(plot_beats(cfg.plot, report, flow, clip, plot_title(report)))
    if not report["soundtrack"]:
        print(f"vmas beats: {cfg.video} has no soundtrack; showing video beats only (pass --audio FILE)", file=sys.stderr)
    if cfg.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{cfg.video}: {report['duration_s']} s, flow at {report['flow_fps']} fps; flow mean {report['flow']['mean']} "
          f"max {report['flow']['max']} px/frame at {report['flow']['peak_s']} s")
    for key, label in (("music_beats", "music beats"), ("video_beats", "video beats"), ("overlaps", "overlaps")):
        times = report[key]
        shown = "none (no soundtrack)" if times is None else " ".join(f"{t:.2f}" for t in times) or "none"
        print(f"{label} ({0 if times is None else len(times)}): {shown}")
    if report["overlap_share"] is not None:
        print(f"{report['overlap_share']:.0%} of music beats have a video beat within "
              f"{config.match_window / sequence.token_rate:.2f} s")
        print(alignment_line(report["alignment"]))
        print(onset_alignment_line(report["onset_alignment"], config.onset_match_window / sequence.token_rate))
    if cfg.plot:
        print(f"plot: {report['plot']}")
    return 0
