"""FAD embedders (`AUDIO_EMBEDDERS`): `embedder(wav [B, C, N], sample_rate) -> embeddings [B, T, D]`.

Every embedder is an `nn.Module` with `name`, `dim` (D), `sample_rate` (the rate it resamples to),
`calibrated` (False when its weights are random, e.g. the demo) and `cache_key` (names the weights,
so cached reference statistics are only reused with the same network).

- `vggish`: the VGGish network (Hershey et al. 2017) in PyTorch, on VGGish's own log-mel frontend
  (16 kHz mono, 25 ms Hann windows every 10 ms, 512-point FFT, 64 HTK mel bands 125-7500 Hz,
  log(mel + 0.01), 96-frame = 0.96 s non-overlapping examples) -> one 128-d embedding per 0.96 s.
  The output is the raw `embedding` layer (no ReLU, no PCA/quantisation), as in the TF FAD code
  used by MusicGen. Weights: the public TF release converted to PyTorch by torchvggish
  (`vggish-10086976.pth`), state-dict keys `features.{0,3,6,8,11,13}.{weight,bias}` (conv3x3:
  1->64, 64->128, 128->256, 256->256, 256->512, 512->512) and `embeddings.{0,2,4}.{weight,bias}`
  (12288->4096, 4096->4096, 4096->128), see docs/EVALUATION.md.
- `clap`: the audio tower of transformers' `ClapModel` (`laion/larger_clap_music`), 48 kHz, one
  512-d embedding per 10-s window.
- `encodec`: the codec encoder's continuous latents (before quantisation), one per codec frame.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from vmas_lightning.metrics.audio import mono_at
from vmas_lightning.models.pretrained import (
    check_state_dict, from_pretrained, load_checkpoint_file, load_hf_model, seeded_init,
)
from vmas_lightning.registry import AUDIO_CODECS, AUDIO_EMBEDDERS

VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
VGGISH_HOW = (
    "download the torchvggish conversion of VGGish (vggish-10086976.pth, see docs/EVALUATION.md) and pass "
    "its local path as 'pretrained', or place it in torch.hub's checkpoint cache (~/.cache/torch/hub/checkpoints)"
)
CLAP_MUSIC = "laion/larger_clap_music"


# ----------------------------------------------------------------------------------------------- VGGish
def _hertz_to_mel(hertz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + hertz / 700.0)


def vggish_mel_matrix(
    num_mel_bins: int = 64, num_spectrogram_bins: int = 257, sample_rate: int = 16000,
    lower_hz: float = 125.0, upper_hz: float = 7500.0,
) -> torch.Tensor:
    """VGGish's `spectrogram_to_mel_matrix` (HTK mel, triangles in mel space, DC bin zeroed) `[257, 64]`."""
    bins_mel = _hertz_to_mel(np.linspace(0.0, sample_rate / 2, num_spectrogram_bins))
    edges = np.linspace(_hertz_to_mel(lower_hz), _hertz_to_mel(upper_hz), num_mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return torch.from_numpy(weights).float()


class VGGishFrontend(nn.Module):
    """16-kHz mono `[B, N]` -> log-mel examples `[B, E, 96, 64]` (VGGish's `waveform_to_examples`)."""

    window_samples, hop_samples, fft_size, example_frames = 400, 160, 512, 96

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(self.window_samples, periodic=True), persistent=False)
        self.register_buffer("mel", vggish_mel_matrix(num_spectrogram_bins=self.fft_size // 2 + 1), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.shape[-1] < self.window_samples:
            return wav.new_zeros(wav.shape[0], 0, self.example_frames, self.mel.shape[1])
        frames = wav.unfold(-1, self.window_samples, self.hop_samples) * self.window  # [B, F, 400]
        magnitude = torch.fft.rfft(frames, n=self.fft_size).abs()
        log_mel = torch.log(magnitude @ self.mel + 0.01)  # [B, F, 64]
        num_examples = log_mel.shape[1] // self.example_frames
        log_mel = log_mel[:, : num_examples * self.example_frames]
        return log_mel.reshape(wav.shape[0], num_examples, self.example_frames, -1)


class VGGish(nn.Module):
    """The VGGish network: log-mel examples `[n, 96, 64]` -> embeddings `[n, 128]` (torchvggish keys)."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for width in (64, "pool", 128, "pool", 256, 256, "pool", 512, 512, "pool"):
            if width == "pool":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels = width
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
        )

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = self.features(examples[:, None])  # [n, 512, 6, 4]
        x = x.permute(0, 2, 3, 1).flatten(1)  # TF's NHWC flatten order, as the released weights expect
        return self.embeddings(x)


class VGGishEmbedder(nn.Module):
    name, dim, sample_rate = "vggish", 128, 16000

    def __init__(self, network: VGGish, calibrated: bool, source: str):
        super().__init__()
        self.frontend = VGGishFrontend()
        self.network = network.eval().requires_grad_(False)
        self.calibrated = calibrated
        self.cache_key = f"vggish:{source}"

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        examples = self.frontend(mono_at(wav, sample_rate, self.sample_rate))  # [B, E, 96, 64]
        batch, num_examples = examples.shape[:2]
        if num_examples == 0:
            return examples.new_zeros(batch, 0, self.dim)
        return self.network(examples.flatten(0, 1)).reshape(batch, num_examples, self.dim)


@AUDIO_EMBEDDERS.register("vggish")
def vggish(pretrained: Optional[str] = VGGISH_URL, seed: int = 0) -> VGGishEmbedder:
    """VGGish; `pretrained`: local .pth / URL of the torchvggish state dict, or None for random
    weights drawn from `seed` (uncalibrated: only for smoke tests)."""
    if pretrained:
        network = VGGish()
        state = load_checkpoint_file(pretrained, "VGGish", VGGISH_HOW)
        check_state_dict(network, state, pretrained, "a torchvggish VGGish state dict", VGGISH_HOW)
        network.load_state_dict(state)
        return VGGishEmbedder(network, calibrated=True, source=str(pretrained))
    with seeded_init(seed):
        network = VGGish()
    return VGGishEmbedder(network, calibrated=False, source=f"random-seed{seed}")


# ------------------------------------------------------------------------------------------------- CLAP
class ClapEmbedder(nn.Module):
    """CLAP audio tower: one embedding per window of the feature extractor's length (10 s); a last
    window shorter than 1 s is dropped unless it is the only one."""

    name = "clap"

    def __init__(self, model: nn.Module, feature_extractor, source: str, calibrated: bool = True):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.feature_extractor = feature_extractor
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.window_samples = int(feature_extractor.nb_max_samples)
        self.dim = int(model.config.projection_dim)
        self.calibrated = calibrated
        self.cache_key = f"clap:{source}"

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        wav = mono_at(wav, sample_rate, self.sample_rate)
        windows = list(torch.split(wav, self.window_samples, dim=-1))
        if len(windows) > 1 and windows[-1].shape[-1] < self.sample_rate:
            windows.pop()
        batch = wav.shape[0]
        arrays = [w[b].cpu().numpy() for b in range(batch) for w in windows]  # clip-major order
        inputs = self.feature_extractor(arrays, sampling_rate=self.sample_rate, return_tensors="pt")
        if "is_longer" in inputs:  # no window exceeds 10 s; the extractor flags a random one in that case
            inputs["is_longer"] = torch.zeros_like(inputs["is_longer"])
        inputs = {k: v.to(wav.device) for k, v in inputs.items()}
        features = self.model.get_audio_features(**inputs)
        if not torch.is_tensor(features):  # transformers returns a ModelOutput in some versions
            features = features.pooler_output
        return features.float().reshape(batch, len(windows), -1)


@AUDIO_EMBEDDERS.register("clap")
def clap(pretrained: str = CLAP_MUSIC) -> ClapEmbedder:
    """CLAP; `pretrained`: hub id or local folder holding the `ClapModel` and its feature extractor."""
    from transformers import ClapFeatureExtractor, ClapModel

    how = f"get {CLAP_MUSIC} with `hf download {CLAP_MUSIC} --local-dir DIR` and pass DIR as the embedder's pretrained"
    model = load_hf_model({"clap": ClapModel}, pretrained, "CLAP", how)
    extractor = from_pretrained(ClapFeatureExtractor.from_pretrained, pretrained, "CLAP feature extractor", how)
    return ClapEmbedder(model, extractor, source=str(pretrained))


# ---------------------------------------------------------------------------------------------- EnCodec
class CodecLatentEmbedder(nn.Module):
    """A codec encoder's continuous latents `[B, T, Dc]`, one per codec frame (no extra weights)."""

    name = "encodec"

    def __init__(self, codec: nn.Module, calibrated: bool, source: str):
        super().__init__()
        self.codec = codec
        self.sample_rate = int(codec.sample_rate)
        self.dim = int(codec.model.config.hidden_size)
        self.calibrated = calibrated
        self.cache_key = f"encodec:{source}"

    @torch.no_grad()
    def forward(self, wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
        wav = mono_at(wav, sample_rate, self.sample_rate)
        with torch.autocast(wav.device.type, enabled=False):
            latents = self.codec.model.encoder(wav[:, None])  # [B, Dc, T]
        return latents.transpose(1, 2)


@AUDIO_EMBEDDERS.register("encodec")
def encodec(pretrained: Optional[str] = None, size: str = "32khz", seed: int = 0) -> CodecLatentEmbedder:
    """EnCodec encoder latents; options as the `encodec` codec (`pretrained` hub id / folder, or a
    random `size` preset drawn from `seed`, e.g. `tiny` for the demo)."""
    codec = AUDIO_CODECS.build({"name": "encodec", "pretrained": pretrained, "size": size, "seed": seed})
    source = str(pretrained) if pretrained else f"random-{size}-seed{seed}"
    return CodecLatentEmbedder(codec, calibrated=bool(pretrained), source=source)


def build_embedder(spec) -> nn.Module:
    """An embedder from a registry spec, or an embedder module passed as is."""
    return spec if isinstance(spec, nn.Module) else AUDIO_EMBEDDERS.build(spec)


__all__ = [
    "ClapEmbedder", "CodecLatentEmbedder", "VGGish", "VGGishEmbedder", "VGGishFrontend",
    "build_embedder", "clap", "encodec", "vggish", "vggish_mel_matrix",
]
