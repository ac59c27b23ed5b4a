"""`mel_rvq`: a small non-neural codec at the paper's token geometry, fitted in a minute on a CPU.

EnCodec is the paper's codec; this one exists so that the CPU demo makes real music without
downloading anything. Same interface and geometry (32 kHz, hop 640 -> 50 tokens/s, K = 4 codebooks):

- encode: log-mel frames (2048-point STFT, 256 mel bands from 20 Hz), each centred on its token
  step's 20-ms span, standardised per band, then residual k-means (each codebook quantises what
  the previous ones left). A frame whose window would cross the clip's start or end holds the
  nearest frame whose window lies inside, so the clip's edges add no fake spectra.
- decode: the sum of the chosen centroids, a 3-frame median over time (one-frame quantisation
  outliers would become clicks) -> mel power -> linear magnitude (pseudo-inverse of the mel filters) -> fast Griffin-Lim (Perraudin et al. 2013; momentum 0.99, zero initial phase, so
  decoding is deterministic), with edge frames repeated so its edge effects fall outside the clip;
  a clip whose peak would exceed 0.99 is scaled down as a whole (never clipped).
- `codebook_embeddings()`: the centroids `[K, V, 256]`, in standardised log-mel space.

Measured on held-out demo clips (docs/EVALUATION.md): the round trip keeps the note's pitch class
and every true onset. Griffin-Lim cannot recover exact phase, so timbre is smeared slightly.
`fit_mel_rvq` builds one from waveforms; the file it saves is what `model.codec.pretrained` points to.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vmas_lightning.files import atomic_torch_save
from vmas_lightning.errors import VMASError
from vmas_lightning.models.pretrained import load_checkpoint_file
from vmas_lightning.registry import AUDIO_CODECS

FILE_FORMAT = "vmas-mel-rvq"
LOG_FLOOR = 1e-5  # added to the mel power before the log: -115 dB below full scale
PEAK_LIMIT = 0.99
FIT_HOW = "make one with `vmas demo-assets --config configs/demo.yaml` (or use the committed checkpoints/demo/mel_rvq.pt)"


@dataclass(frozen=True)
class MelRVQConfig:
    """Geometry of a `MelRVQCodec`; fixed when it is fitted and saved with it."""

    sample_rate: int = 32000
    hop_length: int = 640
    n_fft: int = 2048
    n_mels: int = 256
    f_min: float = 20.0
    num_codebooks: int = 4
    codebook_size: int = 512


class MelRVQCodec(nn.Module):
    """`encode(wav [B, 1, N]) -> tokens [B, K, ceil(N / hop)]`, `decode(tokens [B, K, T]) -> wav [B, 1, T * hop]`,
    `codebook_embeddings() -> [K, V, n_mels]`. Frozen: it has buffers, no parameters.

    Args:
        config: the geometry.
        num_codebooks: codebooks used (at most `config.num_codebooks`).
        griffin_lim_iters: phase-reconstruction iterations of `decode` (more: slower, slightly cleaner).
    """

    def __init__(self, config: MelRVQConfig, num_codebooks: Optional[int] = None, griffin_lim_iters: int = 32):
        super().__init__()
        num_codebooks = config.num_codebooks if num_codebooks is None else num_codebooks
        if not 1 <= num_codebooks <= config.num_codebooks:
            raise VMASError(f"mel_rvq: num_codebooks must be 1..{config.num_codebooks}, got {num_codebooks}")
        if griffin_lim_iters < 1:
            raise VMASError(f"mel_rvq: griffin_lim_iters must be >= 1, got {griffin_lim_iters}")
        self.config = config
        self.sample_rate = config.sample_rate
        self.frame_rate = config.sample_rate / config.hop_length
        self.num_codebooks = num_codebooks
        self.codebook_size = config.codebook_size
        self.griffin_lim_iters = griffin_lim_iters
        filters = torch.from_numpy(
            librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.f_min)
        ).float()  # [M, F]
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)
        self.register_buffer("mel_filters", filters, persistent=False)
        self.register_buffer("mel_inverse", torch.linalg.pinv(filters), persistent=False)  # [F, M]
        self.register_buffer("mean", torch.zeros(config.n_mels))
        self.register_buffer("std", torch.ones(config.n_mels))
        self.register_buffer("codebooks", torch.zeros(config.num_codebooks, config.codebook_size, config.n_mels))

    # ------------------------------------------------------------------ analysis
    @property
    def _edge_frames(self) -> int:
        """Frames at each end whose analysis window reaches outside the clip."""
        cfg = self.config
        return math.ceil((cfg.n_fft // 2 - cfg.hop_length // 2) / cfg.hop_length)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """`[B, N]` -> standardised log-mel `[B, T, M]`, T = ceil(N / hop); frame t centred at (t + 0.5) * hop."""
        cfg = self.config
        steps = math.ceil(wav.shape[-1] / cfg.hop_length)
        left = cfg.n_fft // 2 - cfg.hop_length // 2
        right = left + steps * cfg.hop_length - wav.shape[-1] + cfg.hop_length
        padded = F.pad(wav.float(), (left, right))
        spectrum = torch.stft(padded, cfg.n_fft, cfg.hop_length, window=self.window, center=False, return_complex=True)
        mel = self.mel_filters @ spectrum[..., :steps].abs().square()  # [B, M, T]
        edge = self._edge_frames
        if steps > 2 * edge:
            mel[..., :edge] = mel[..., edge : edge + 1]
            mel[..., steps - edge :] = mel[..., steps - edge - 1 : steps - edge]
        return ((torch.log(mel + LOG_FLOOR).transpose(1, 2)) - self.mean) / self.std

    def quantize(self, latents: torch.Tensor) -> torch.Tensor:
        """Standardised log-mel `[B, T, M]` -> codes `[B, K, T]` (residual nearest-centroid search)."""
        residual, codes = latents, []
        for codebook in self.codebooks[: self.num_codebooks]:
            index = torch.cdist(residual, codebook[None].expand(residual.shape[0], -1, -1)).argmin(dim=-1)
            codes.append(index)
            residual = residual - codebook[index]
        return torch.stack(codes, dim=1)

    def dequantize(self, tokens: torch.Tensor) -> torch.Tensor:
        """Codes `[B, K, T]` -> standardised log-mel `[B, T, M]` (the sum of the chosen centroids)."""
        return sum(self.codebooks[k][tokens[:, k]] for k in range(tokens.shape[1]))

    # ------------------------------------------------------------------ codec interface
    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise ValueError(f"mel_rvq: expected mono audio [B, 1, N], got {tuple(wav.shape)}")
        return self.quantize(self.log_mel(wav[:, 0]))

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """`[B, K, T]` -> `[B, 1, T * hop]`: `synthesize`, each clip scaled down as a whole when its peak exceeds 0.99."""
        wav = self.synthesize(tokens)
        peak = wav.abs().amax(dim=-1, keepdim=True)
        return torch.where(peak > PEAK_LIMIT, wav * (PEAK_LIMIT / peak), wav)[:, None]

    @torch.no_grad()
    def synthesize(self, tokens: torch.Tensor) -> torch.Tensor:
        """`[B, K, T]` -> waveform `[B, T * hop]` by Griffin-Lim, without the peak limit."""
        cfg = self.config
        log_mel = median3(self.dequantize(tokens)) * self.std + self.mean  # [B, T, M]
        mel = (log_mel.exp() - LOG_FLOOR).clamp_min(0.0).transpose(1, 2)
        magnitude = (self.mel_inverse @ mel).clamp_min(0.0).sqrt()  # [B, F, T]
        steps, margin = magnitude.shape[-1], self._edge_frames + 2
        wav = self.griffin_lim(F.pad(magnitude, (margin, margin), mode="replicate"))
        start = margin * cfg.hop_length - cfg.hop_length // 2  # padded frame j is centred at j * hop
        return wav[:, start : start + steps * cfg.hop_length]

    def griffin_lim(self, magnitude: torch.Tensor, momentum: float = 0.99) -> torch.Tensor:
        """Fast Griffin-Lim: magnitude `[B, F, T']` (frame j centred at j * hop) -> waveform `[B, (T' - 1) * hop]`."""
        cfg = self.config
        stft = dict(n_fft=cfg.n_fft, hop_length=cfg.hop_length, window=self.window)
        length = (magnitude.shape[-1] - 1) * cfg.hop_length
        angles = torch.ones_like(magnitude, dtype=torch.complex64)
        previous = torch.zeros_like(angles)
        for _ in range(self.griffin_lim_iters):
            rebuilt = torch.stft(torch.istft(magnitude * angles, length=length, **stft), return_complex=True, **stft)
            angles = rebuilt - (momentum / (1 + momentum)) * previous
            angles = angles / angles.abs().clamp_min(1e-8)
            previous = rebuilt
        return torch.istft(magnitude * angles, length=length, **stft)

    def rebuild_options(self) -> dict:
        """Options of `mel_rvq` that build this codec again without its file (checkpoints record them;
        the statistics and centroids are buffers in the checkpoint's state dict)."""
        return {"pretrained": None, "config": asdict(self.config)}

    def codebook_embeddings(self) -> torch.Tensor:
        """`[K, V, n_mels]`: the centroids (standardised log-mel); their sum over K is a frame's latent."""
        return self.codebooks[: self.num_codebooks]

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the fitted codec (geometry, standardisation, centroids) to a `torch.load(weights_only=True)` file."""
        state = {"format": FILE_FORMAT, "config": asdict(self.config), "mean": self.mean, "std": self.std,
                 "codebooks": self.codebooks}
        atomic_torch_save(state, path)
        return Path(path)


def median3(frames: torch.Tensor) -> torch.Tensor:
    """Median of each frame with its two neighbours over time (edges repeated), `[B, T, M]` -> `[B, T, M]`:
    removes one-frame quantisation outliers, which Griffin-Lim turns into clicks, and keeps steps
    such as note onsets in place."""
    padded = F.pad(frames.transpose(1, 2), (1, 1), mode="replicate")  # [B, M, T + 2]
    return padded.unfold(-1, 3, 1).median(dim=-1).values.transpose(1, 2)


def kmeans(points: torch.Tensor, num_clusters: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Lloyd's k-means of `points [P, D]` -> centroids `[num_clusters, D]`; initial centroids are
    random points, and a centroid left empty moves to the point its cluster set fits worst."""
    if points.shape[0] < num_clusters:
        raise VMASError(f"mel_rvq: {points.shape[0]} frames cannot fit {num_clusters} centroids; give more audio")
    centroids = points[torch.randperm(points.shape[0], generator=generator)[:num_clusters]].clone()
    for _ in range(iters):
        distances = torch.cdist(points, centroids)
        nearest = distances.argmin(dim=1)
        counts = torch.bincount(nearest, minlength=num_clusters)
        sums = torch.zeros_like(centroids).index_add_(0, nearest, points)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled, None]
        if not filled.all():
            worst = distances.min(dim=1).values.topk(int((~filled).sum())).indices
            centroids[~filled] = points[worst]
    return centroids


def fit_mel_rvq(
    waveforms: Iterable[np.ndarray],
    config: MelRVQConfig = MelRVQConfig(),
    iters: int = 25,
    seed: int = 0,
    progress: Optional[Callable[[str], None]] = None,
) -> MelRVQCodec:
    """Fit the standardisation and the K codebooks on mono float waveforms `[N]` at `config.sample_rate`."""
    codec = MelRVQCodec(config)
    with torch.no_grad():
        frames = torch.cat([codec.log_mel(torch.as_tensor(np.asarray(w, dtype=np.float32))[None])[0] for w in waveforms])
        if frames.shape[0] == 0:
            raise VMASError("mel_rvq: no audio to fit on")
        codec.mean.copy_(frames.mean(dim=0))
        codec.std.copy_(frames.std(dim=0).clamp_min(1e-3))
        residual = (frames - codec.mean) / codec.std
        generator = torch.Generator().manual_seed(seed)
        for k in range(config.num_codebooks):
            codec.codebooks[k] = kmeans(residual, config.codebook_size, iters, generator)
            residual = residual - codec.codebooks[k][torch.cdist(residual, codec.codebooks[k]).argmin(dim=1)]
            if progress is not None:
                progress(f"codebook {k + 1}/{config.num_codebooks}: residual mean square {residual.square().mean():.4f}")
    return codec


def load_mel_rvq(source: str | Path, num_codebooks: Optional[int] = None, griffin_lim_iters: int = 32) -> MelRVQCodec:
    """A codec saved by `MelRVQCodec.save` (local path or URL)."""
    state = load_checkpoint_file(source, "mel_rvq codec (model.codec.pretrained)", FIT_HOW)
    if not isinstance(state, dict) or state.get("format") != FILE_FORMAT:
        raise VMASError(f"{source}: not a mel_rvq codec file (no format '{FILE_FORMAT}'); {FIT_HOW}")
    config = MelRVQConfig(**state["config"])
    codec = MelRVQCodec(config, num_codebooks, griffin_lim_iters)
    codec.load_state_dict({"mean": state["mean"], "std": state["std"], "codebooks": state["codebooks"]}, assign=True)
    return codec


@AUDIO_CODECS.register("mel_rvq")
def mel_rvq(
    pretrained: Optional[str] = None,
    num_codebooks: int = 4,
    griffin_lim_iters: int = 32,
    config: Optional[dict] = None,
) -> MelRVQCodec:
    """The demo's mel residual-VQ codec; `pretrained`: the file written by `vmas demo-assets`.
    `config` (a `MelRVQConfig` dict, as a checkpoint records it) builds it unfitted, for a
    checkpoint's buffers to fill."""
    if config is not None:
        return MelRVQCodec(MelRVQConfig(**config), num_codebooks, griffin_lim_iters)
    if not pretrained:
        raise VMASError(f"mel_rvq needs model.codec.pretrained (a fitted codec file); {FIT_HOW}")
    return load_mel_rvq(pretrained, num_codebooks, griffin_lim_iters)
