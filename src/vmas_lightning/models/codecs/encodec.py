"""Frozen EnCodec 32 kHz (transformers `EncodecModel`): waveform <-> 4 codebooks at 50 Hz."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from transformers import EncodecConfig, EncodecModel

from vmas_lightning.errors import VMASError
from vmas_lightning.models.pretrained import load_hf_model, seeded_init
from vmas_lightning.registry import AUDIO_CODECS

# facebook/encodec_32khz's geometry (hop 8 * 5 * 4 * 4 = 640 -> 50 Hz, 4 codebooks of 2048 at 2.2 kbps)
ENCODEC_32KHZ = dict(
    sampling_rate=32000,
    upsampling_ratios=(8, 5, 4, 4),
    codebook_size=2048,
    codebook_dim=128,
    hidden_size=128,
    num_filters=64,
    num_lstm_layers=2,
    use_causal_conv=False,
    use_conv_shortcut=False,
    normalize=False,
)
ENCODEC_SIZES = {
    "32khz": ENCODEC_32KHZ,
    # Same geometry (32 kHz, hop 640, 4 codebooks), a few thousand parameters: CPU tests and demos.
    "tiny": dict(ENCODEC_32KHZ, codebook_size=256, codebook_dim=16, hidden_size=16, num_filters=4, num_lstm_layers=1),
}


def bandwidth_kbps(config: EncodecConfig, num_codebooks: int) -> float:
    """The bandwidth (kbps) at which EnCodec uses exactly `num_codebooks` codebooks."""
    return num_codebooks * math.log2(config.codebook_size) * config.frame_rate / 1000


class EncodecCodec(nn.Module):
    """`encode(wav [B, 1, N]) -> tokens [B, K, N / hop]`, `decode(tokens) -> wav [B, 1, T * hop]`,
    `codebook_embeddings() -> [K, V, Dc]`. Always in eval mode, no gradients, float32."""

    def __init__(self, model: EncodecModel, num_codebooks: int = 4):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        config = model.config
        self.sample_rate = config.sampling_rate
        self.frame_rate = config.frame_rate
        self.codebook_size = config.codebook_size
        self.num_codebooks = num_codebooks
        self.bandwidth = bandwidth_kbps(config, num_codebooks)
        if len(model.quantizer.layers) < num_codebooks:
            raise VMASError(f"encodec: the model has {len(model.quantizer.layers)} codebooks, not {num_codebooks}")

    def train(self, mode: bool = True) -> "EncodecCodec":
        super().train(mode)
        self.model.eval()
        return self

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.autocast(wav.device.type, enabled=False):
            codes = self.model.encode(wav.float(), bandwidth=self.bandwidth).audio_codes  # [1, B, K, T]
        return codes[0]

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.autocast(tokens.device.type, enabled=False):
            return self.model.decode(tokens[None], [None]).audio_values

    def rebuild_options(self) -> dict:
        """Options of `encodec` that build this network again without its weights source (checkpoints record them)."""
        return {"pretrained": None, "config": self.model.config.to_dict()}

    def codebook_embeddings(self) -> torch.Tensor:
        """[K, V, Dc]: the RVQ codebook vectors (a frozen buffer)."""
        return torch.stack([layer.codebook.embed for layer in self.model.quantizer.layers[: self.num_codebooks]])


def _init_codebooks(model: EncodecModel, generator: torch.Generator) -> None:
    """Random-init RVQ codebooks (transformers leaves them at zero, which maps everything to code 0):
    each layer's entries are drawn with the mean/std of its residual on a seeded noise clip."""
    wav = torch.randn(1, 1, model.config.sampling_rate, generator=generator) * 0.1
    residual = model.encoder(wav).transpose(1, 2).reshape(-1, model.config.codebook_dim)
    for layer in model.quantizer.layers:
        noise = torch.randn(model.config.codebook_size, residual.shape[1], generator=generator)
        layer.codebook.embed.copy_(residual.mean(0) + noise * residual.std(0))
        residual = residual - layer.codebook.decode(layer.codebook.encode(residual))


@AUDIO_CODECS.register("encodec")
def encodec(
    pretrained: Optional[str] = None,
    size: str = "32khz",
    num_codebooks: int = 4,
    seed: int = 0,
    config: Optional[dict] = None,
) -> EncodecCodec:
    """EnCodec; `pretrained`: hub id or local folder (facebook/encodec_32khz). Without it the
    `size` preset (32khz or tiny) is built with weights drawn from `seed`, the same in every process.
    `config` (an `EncodecConfig` dict, as a checkpoint records it) builds that network untrained,
    for a checkpoint's weights to fill."""
    if config is not None:
        return EncodecCodec(EncodecModel(EncodecConfig.from_dict(config)), num_codebooks)
    if pretrained:
        model = load_hf_model(
            {"encodec": EncodecModel}, pretrained, "EnCodec (model.codec.pretrained)",
            "get facebook/encodec_32khz with `hf download facebook/encodec_32khz --local-dir DIR` and set that key to DIR",
        )
        return EncodecCodec(model, num_codebooks)
    if size not in ENCODEC_SIZES:
        raise VMASError(f"encodec: unknown size '{size}'; known: {', '.join(ENCODEC_SIZES)}")
    config = EncodecConfig(**ENCODEC_SIZES[size])
    config.target_bandwidths = [bandwidth_kbps(config, num_codebooks)]
    with seeded_init(seed):
        model = EncodecModel(config)
        if not model.quantizer.layers[0].codebook.embed.is_meta:  # `vmas profile` builds on meta
            with torch.no_grad():
                _init_codebooks(model, torch.Generator().manual_seed(seed))
    return EncodecCodec(model, num_codebooks)
