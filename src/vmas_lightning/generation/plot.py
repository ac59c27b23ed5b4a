"""Alignment plot of generated music: waveform (or spectrogram), music onsets and video beats on one time axis."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from vmas_lightning.sequence import SequenceConfig


def plot_alignment(
    path: str | Path,
    audio: np.ndarray,
    beats: dict[str, np.ndarray],
    sequence: SequenceConfig,
    spectrogram: bool = False,
    title: Optional[str] = None,
) -> Path:
    """Write a PNG of `audio [N]` (at `sequence.sample_rate`) with `beats` (`objectives.beats.compute_beats`
    of the audio and the video's flow on `sequence`'s token grid: the beats the training loss
    weights): its music beats, the video beats and their overlaps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    step_times = np.arange(sequence.num_tokens) / sequence.token_rate
    fig, ax = plt.subplots(figsize=(12, 3.5), constrained_layout=True)
    if spectrogram:
        ax.specgram(audio, Fs=sequence.sample_rate, NFFT=1024, noverlap=768, cmap="magma")
        ax.set_ylabel("frequency (Hz)")
        low, high = 0.0, sequence.sample_rate / 2
    else:
        ax.plot(np.arange(len(audio)) / sequence.sample_rate, audio, color="0.6", linewidth=0.4, label="waveform")
        ax.set_ylabel("amplitude")
        low, high = -1.0, 1.0
    rows = [("music_beats", "tab:blue", "music beats", (low, low + 0.33 * (high - low))),
            ("video_beats", "tab:orange", "video beats", (low + 0.33 * (high - low), low + 0.66 * (high - low))),
            ("overlap", "tab:green", "overlaps", (low + 0.66 * (high - low), high))]
    for key, color, label, (bottom, top) in rows:
        times = step_times[np.asarray(beats[key]).reshape(-1)[: sequence.num_tokens] > 0]
        ax.vlines(times, bottom, top, colors=color, linewidth=1.2, label=f"{label} ({len(times)})")
    ax.set_xlim(0, sequence.duration_s)
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right", fontsize=8, ncols=4)
    ax.set_title(title or "generated music vs. video beats")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
