"""`demo_style`: FAD embedder and KL classifier calibrated for the demo's synthetic music.

The paper's evaluators (VGGish, PaSST/AST) need downloads; random ones measure nothing. The demo
has a known ground truth instead: each clip's music has one of four styles (`data.demo.STYLES`:
tempo, timbre, key). `StyleNet` is a small network fitted on the demo's training music to tell the
style (`vmas demo-assets`); its penultimate layer, one vector per 1-s window, is the FAD embedding,
and its softmax over the styles, one per 10-s segment, is the KL distribution and the style
prediction of `metrics.synthetic`. Both are calibrated for the demo domain only: their numbers are
not comparable with the paper's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vmas_lightning.files import atomic_torch_save
from vmas_lightning.errors import VMASError
from vmas_lightning.metrics.audio import mono_at
from vmas_lightning.models.pretrained import load_checkpoint_file
from vmas_lightning.registry import AUDIO_CLASSIFIERS, AUDIO_EMBEDDERS

FILE_FORMAT = "vmas-demo-style"
FIT_HOW = "make one with `vmas demo-assets --config configs/demo.yaml` (or use the committed checkpoints/demo/style_net.pt)"


class StyleNet(nn.Module):
    """16-kHz mono `[B, N]` -> window embeddings `[B, W, dim]` (one per `window_s`) and style logits.

    Log-mel front end (64 bands, 10-ms hop), three dilated 1-D convolutions over time, mean and
    standard deviation pooling per window, a linear embedding layer, then a linear style head.
    """

    sample_rate = 16000
    hop_length, n_fft, n_mels = 160, 1024, 64

    def __init__(self, labels: Sequence[str], dim: int = 64, channels: int = 64, window_s: float = 1.0):
        super().__init__()
        self.labels = tuple(labels)
        self.dim = dim
        self.window_frames = round(window_s * self.sample_rate / self.hop_length)
        filters = librosa.filters.mel(sr=self.sample_rate, n_fft=self.n_fft, n_mels=self.n_mels, fmin=50.0)
        self.register_buffer("mel_filters", torch.from_numpy(filters).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        layers: list[nn.Module] = []
        width = self.n_mels
        for dilation in (1, 2, 4):
            layers += [nn.Conv1d(width, channels, 5, padding=2 * dilation, dilation=dilation), nn.ReLU()]
            width = channels
        self.convs = nn.Sequential(*layers)
        self.embed = nn.Linear(2 * channels, dim)
        self.head = nn.Linear(dim, len(self.labels))

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """`[B, N]` -> `[B, n_mels, frames]`."""
        spectrum = torch.stft(wav.float(), self.n_fft, self.hop_length, window=self.window, return_complex=True)
        return torch.log(self.mel_filters @ spectrum.abs().square() + 1e-6)

    def embeddings(self, wav: torch.Tensor) -> torch.Tensor:
        """`[B, N]` -> `[B, W, dim]`, W = number of whole windows (at least one)."""
        hidden = self.convs(self.log_mel(wav))  # [B, C, frames]
        num_windows = max(1, hidden.shape[-1] // self.window_frames)
        size = min(self.window_frames, hidden.shape[-1])
        windows = hidden[..., : num_windows * size].unflatten(-1, (num_windows, size))  # [B, C, W, size]
        pooled = torch.cat([windows.mean(-1), windows.std(-1, unbiased=False)], dim=1)  # [B, 2C, W]
        return self.embed(pooled.transpose(1, 2))

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Window embeddings `[B, W, dim]` -> style logits `[B, num_styles]` of their mean."""
        return self.head(F.relu(embeddings.mean(dim=1)))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embeddings(wav))

    def save(self, path: str | Path) -> Path:
        atomic_torch_save({"format": FILE_FORMAT, "labels": list(self.labels), "dim": self.dim,
                           "state_dict": self.state_dict()}, path)
        return Path(path)


def load_style_net(source: str | Path) -> StyleNet:
    """A `StyleNet` saved by `StyleNet.save` (local path or URL), in eval mode, frozen."""
    state = load_checkpoint_file(source, "demo_style network (embedder/classifier 'pretrained')", FIT_HOW)
    if not isinstance(state, dict) or state.get("format") != FILE_FORMAT:
        raise VMASError(f"{source}: not a demo_style network file (no format '{FILE_FORMAT}'); {FIT_HOW}")
    net = StyleNet(state["labels"], dim=state["dim"])
    net.load_state_dict(state["state_dict"])
    return net.eval().requires_grad_(False)


def fit_style_net(
    clips: Sequence[np.ndarray],
    labels: Sequence[int],
    label_names: Sequence[str],
    sample_rate: int,
    steps: int = 300,
    batch_size: int = 16,
    crop_s: float = 4.0,
    seed: int = 0,
    progress: Optional[Callable[[str], None]] = None,
) -> StyleNet:
    """Fit a `StyleNet` on mono clips `[N]` at `sample_rate` with integer style `labels`: cross-entropy
    on a random `crop_s` crop's style from the mean of its windows and from every single window."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = StyleNet(label_names)
    audio = mono_at(torch.from_numpy(np.stack(clips)).float(), sample_rate, StyleNet.sample_rate)
    targets = torch.as_tensor(labels, dtype=torch.long)
    crop = min(audio.shape[-1], round(crop_s * StyleNet.sample_rate))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for step in range(steps):
        batch = torch.randint(0, len(clips), (batch_size,), generator=generator)
        start = int(torch.randint(0, audio.shape[-1] - crop + 1, (1,), generator=generator))
        embeddings = net.embeddings(audio[batch, start : start + crop])  # [b, W, dim]
        window_logits = net.head(F.relu(embeddings))  # [b, W, S]
        loss = F.cross_entropy(net.logits(embeddings), targets[batch]) + F.cross_entropy(
            window_logits.flatten(0, 1), targets[batch].repeat_interleave(window_logits.shape[1])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if progress is not None and (step + 1) % 50 == 0:
            progress(f"style net step {step + 1}/{steps}: loss {loss.item():.4f}")
    return net.eval().requires_grad_(False)


class StyleEmbedder(nn.Module):
    """FAD embedder `(wav [B, C, N], sample_rate) -> [B, W, dim]`: one embedding per 1-s window."""

    name = "demo_style"

    def __init__(self, net: StyleNet, source: str):
        super().__init__()
        self.net = net
        self.sample_rate = net.sample_rate
        self.dim = net.dim
        self.calibrated = True  # fitted on the demo's own music: calibrated for that domain only
        self.cache_key = f"demo_style:{source}"

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        return self.net.embeddings(mono_at(wav, sample_rate, self.sample_rate))


class StyleClassifier(nn.Module):
    """KL classifier `(segments: list of 1-D tensors at 16 kHz) -> logits [S, num_styles]`; `labels`
    names the styles (the ground truth of the demo's style accuracy)."""

    name = "demo_style"
    segment_seconds = 10.0

    def __init__(self, net: StyleNet, source: str):
        super().__init__()
        self.net = net
        self.sample_rate = net.sample_rate
        self.labels = net.labels
        self.num_labels = len(net.labels)
        self.calibrated = True
        self.source = source

    @torch.no_grad()
    def forward(self, segments: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.net(segment.float()[None]) for segment in segments])


@AUDIO_EMBEDDERS.register("demo_style")
def demo_style_embedder(pretrained: str) -> StyleEmbedder:
    """The demo style network's window embeddings; `pretrained`: the file `vmas demo-assets` writes."""
    return StyleEmbedder(load_style_net(pretrained), str(pretrained))


@AUDIO_CLASSIFIERS.register("demo_style")
def demo_style_classifier(pretrained: str) -> StyleClassifier:
    """The demo style network's style distribution; `pretrained`: the file `vmas demo-assets` writes."""
    return StyleClassifier(load_style_net(pretrained), str(pretrained))

