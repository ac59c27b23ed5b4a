"""KL classifiers (`AUDIO_CLASSIFIERS`): AudioSet taggers, `classifier(segments) -> logits [S, 527]`.

A classifier is an `nn.Module` with `name`, `sample_rate`, `segment_seconds` (the clip length it was
trained on; longer audio is split into segments of that length), `num_labels` (527) and
`calibrated` (False for random weights). `forward(segments: list of 1-D float tensors at
sample_rate) -> logits [S, num_labels]`.

- `ast`: transformers' Audio Spectrogram Transformer fine-tuned on AudioSet
  (`MIT/ast-finetuned-audioset-10-10-0.4593`), 16 kHz, 10-s segments (AudioSet clips; the feature
  extractor pads them to its 1024 frames = 10.24 s). `pretrained: null` builds a tiny random AST
  for CPU smoke tests (reported as uncalibrated).
- `passt`: MusicGen's classifier (PaSST, 32 kHz). Its package needs torchaudio, which has no build
  for our torch, so the slot only explains that.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

from vmas_lightning.errors import VMASError
from vmas_lightning.models.pretrained import from_pretrained, load_hf_model, seeded_init
from vmas_lightning.registry import AUDIO_CLASSIFIERS

AST_AUDIOSET = "MIT/ast-finetuned-audioset-10-10-0.4593"
AUDIOSET_LABELS = 527
# A few thousand parameters with the real input geometry (128 mel bins x 1024 frames, 16x16 patches).
TINY_AST = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)


class ASTClassifier(nn.Module):
    name = "ast"

    def __init__(self, model: nn.Module, feature_extractor, source: str, calibrated: bool = True):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.feature_extractor = feature_extractor
        self.sample_rate = int(feature_extractor.sampling_rate)
        self.segment_seconds = 10.0
        self.num_labels = int(model.config.num_labels)
        self.calibrated = calibrated
        self.source = source

    @torch.no_grad()
    def forward(self, segments: list[torch.Tensor]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        inputs = self.feature_extractor(
            [s.float().cpu().numpy() for s in segments], sampling_rate=self.sample_rate, return_tensors="pt"
        )
        return self.model(input_values=inputs["input_values"].to(device)).logits.float()


@AUDIO_CLASSIFIERS.register("ast")
def ast(pretrained: Optional[str] = AST_AUDIOSET, seed: int = 0) -> ASTClassifier:
    """AST; `pretrained`: hub id or local folder (model + preprocessor_config.json), or None for a
    tiny random AST drawn from `seed` (uncalibrated: KL values are only smoke-test numbers)."""
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    # AST's 128 mel bands over 257 FFT bins leave a few empty filters by design; transformers warns.
    warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
    if pretrained:
        how = f"get {AST_AUDIOSET} with `hf download {AST_AUDIOSET} --local-dir DIR` and pass DIR as the classifier's pretrained"
        model = load_hf_model({"audio-spectrogram-transformer": ASTForAudioClassification}, pretrained, "AST", how)
        extractor = from_pretrained(ASTFeatureExtractor.from_pretrained, pretrained, "AST feature extractor", how)
        if model.config.num_labels != AUDIOSET_LABELS:
            raise VMASError(f"{pretrained}: AST has {model.config.num_labels} labels, not the {AUDIOSET_LABELS} of AudioSet")
        return ASTClassifier(model, extractor, source=str(pretrained))
    with seeded_init(seed):
        model = ASTForAudioClassification(ASTConfig(num_labels=AUDIOSET_LABELS, **TINY_AST))
    return ASTClassifier(model, ASTFeatureExtractor(), source=f"random-tiny-seed{seed}", calibrated=False)


@AUDIO_CLASSIFIERS.register("passt")
def passt() -> nn.Module:
    """MusicGen's PaSST classifier: not available (hear21passt needs torchaudio)."""
    raise VMASError(
        "audio classifier 'passt' (MusicGen's KL protocol) needs the hear21passt package, which needs "
        "torchaudio, and torchaudio has no build for this torch; use classifier 'ast' (see docs/EVALUATION.md)"
    )


def build_classifier(spec) -> nn.Module:
    """A classifier from a registry spec, or a classifier module passed as is."""
    return spec if isinstance(spec, nn.Module) else AUDIO_CLASSIFIERS.build(spec)
