"""Alignment plot of generated music: waveform (or spectrogram), music onsets and video beats on one time axis."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from vmas_lightning.sequence import SequenceConfig


def plot_alignment(
    path: str | Path,
    audio: np.ndarray,
    flow,
    sequence: SequenceConfig,
    beat_config=None,
    spectrogram: bool = False,
    title: Optional[str] = None,
) -> Path:
    """Write a PNG of `audio [N]` (at `sequence.sample_rate`) with its music beats, the video beats of
    the video's `flow` (`objectives.beats.video_flow`) and their overlaps, all from
    `objectives.beats.compute_beats` at the token rate (the beats the training loss weights)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vmas_lightning.objectives.beats import BeatConfig, compute_beats

    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    clip = sequence.with_duration(len(audio) / sequence.sample_rate)
    beats = compute_beats(audio, clip.sample_rate, flow, clip, beat_config or BeatConfig())
    step_times = np.arange(clip.num_tokens) / clip.token_rate
    fig, ax = plt.subplots(figsize=(12, 3.5), constrained_layout=True)
    if spectrogram:
        ax.specgram(audio, Fs=clip.sample_rate, NFFT=1024, noverlap=768, cmap="magma")
        ax.set_ylabel("frequency (Hz)")
        low, high = 0.0, clip.sample_rate / 2
    else:
        ax.plot(np.arange(len(audio)) / clip.sample_rate, audio, color="0.6", linewidth=0.4, label="waveform")
        ax.set_ylabel("amplitude")
        low, high = -1.0, 1.0
    rows = [("music_beats", "tab:blue", "music onsets", (low, low + 0.33 * (high - low))),
            ("video_beats", "tab:orange", "video beats", (low + 0.33 * (high - low), low + 0.66 * (high - low))),
            ("overlap", "tab:green", "overlaps", (low + 0.66 * (high - low), high))]
    for key, color, label, (bottom, top) in rows:
        times = step_times[np.asarray(beats[key]).reshape(-1)[: clip.num_tokens] > 0]
        ax.vlines(times, bottom, top, colors=color, linewidth=1.2, label=f"{label} ({len(times)})")
    ax.set_xlim(0, clip.duration_s)
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right", fontsize=8, ncols=4)
    ax.set_title(title or "generated music vs. video beats")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
