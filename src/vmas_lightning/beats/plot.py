"""The beat plot of `vmas beats --plot` and `vmas generate --plot`: a clip's flow, video beats, music
beats and overlaps on one time axis, under the music's waveform (or spectrogram) when given."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from vmas_lightning.beats.annotate import flow_curve
from vmas_lightning.beats.flow_series import FlowSeries
from vmas_lightning.sequence import SequenceConfig


def plot_beats(
    path: str | Path,
    times: Mapping[str, Optional[Sequence[float]]],
    flow: FlowSeries,
    sequence: SequenceConfig,
    title: str,
    audio: Optional[np.ndarray] = None,
    spectrogram: bool = False,
) -> Path:
    """PNG on one time axis, legible for a minute-long clip (the figure widens with the duration).

    `times` holds the start times (s) of the token steps with a beat: `music_beats`, `video_beats`
    and `overlaps` (`vmas beats`'s report; None: no soundtrack). From the top: `audio [N]` at
    `sequence.sample_rate` (the waveform, or its spectrogram), when given; the flow magnitude at the
    token rate (and per frame pair for short clips) with the video beats marked on it; one lane of
    music beats over one of video beats, each overlap a green line from its music beat to the
    nearest video beat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MultipleLocator

    duration = sequence.duration_s
    centres = (np.arange(sequence.num_tokens) + 0.5) / sequence.token_rate
    curve = flow_curve(flow, sequence.num_tokens, sequence.token_rate)
    width = float(np.clip(duration * 0.35, 12.0, 40.0))
    heights = ((2.5,) if audio is not None else ()) + (3, 1.3)
    fig, axes = plt.subplots(len(heights), 1, sharex=True, figsize=(width, 4.5 if audio is None else 7.0),
                             height_ratios=heights, constrained_layout=True)
    top, lanes = axes[-2:]
    if audio is not None:
        wave = axes[0]
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if spectrogram:
            wave.specgram(audio, Fs=sequence.sample_rate, NFFT=1024, noverlap=768, cmap="magma")
            wave.set_ylabel("frequency (Hz)")
        else:
            wave.plot(np.arange(len(audio)) / sequence.sample_rate, audio, color="0.6", linewidth=0.4)
            wave.set_ylim(-1.0, 1.0)
            wave.set_ylabel("amplitude")
    top.plot(centres, curve, color="0.45", linewidth=0.9, label="flow magnitude (token rate)")
    if flow.magnitude.size <= 400:
        top.plot(flow.times, flow.magnitude, "o", color="0.25", markersize=2, label=f"flow per frame pair ({flow.fps:g} fps)")
    video = np.asarray(times["video_beats"] or [])
    music = np.asarray(times["music_beats"] or [])
    steps = np.minimum((video * sequence.token_rate).round().astype(int), sequence.num_tokens - 1)
    top.plot(video, curve[steps], "v", color="tab:orange", markersize=6, label=f"video beats ({len(video)})")
    top.set_ylim(0, max(float(curve.max()), 1e-3) * 1.15)
    top.set_ylabel("mean flow (px / pair)")
    top.legend(loc="upper right", fontsize=8, ncols=3)
    lanes.vlines(music, 1.1, 1.9, colors="tab:blue", linewidth=1.2, label=f"music beats ({len(music)})")
    lanes.vlines(video, 0.1, 0.9, colors="tab:orange", linewidth=1.2)
    overlaps = times["overlaps"] or []
    for time in overlaps:
        nearest = video[np.argmin(np.abs(video - time))]
        lanes.plot([time, nearest], [1.1, 0.9], color="tab:green", linewidth=2)
    lanes.plot([], [], color="tab:green", linewidth=2, label=f"overlaps ({len(overlaps)})")
    lanes.set_ylim(0, 2)
    lanes.set_yticks([0.5, 1.5], ["video", "music"])
    lanes.legend(loc="upper right", fontsize=8, ncols=2)
    lanes.set_xlim(0, duration)
    lanes.set_xlabel("time (s)")
    lanes.xaxis.set_major_locator(MultipleLocator(1.0 if duration <= 20 else 5.0))
    lanes.xaxis.set_minor_locator(MultipleLocator(0.5 if duration <= 20 else 1.0))
    for axis in axes:
        axis.grid(True, which="major", axis="x", color="0.85", linewidth=0.6)
    fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
