"""KL divergence between AudioSet label distributions of generated and reference music (MusicGen's protocol).

Each waveform is resampled to the classifier's rate and split into classifier-length segments
without padding; a last segment of 0.15 s or less is dropped (audiocraft `metrics/kld.py`). Label
distribution = softmax of the classifier's 527 logits per segment. Segment i of a generated clip is
compared with segment i of its reference; the metric is the mean over all segment pairs (one pair
per clip for clips up to one segment long, e.g. our 10-s clips).
"""
from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vmas_lightning.metrics.audio import mono_at
from vmas_lightning.metrics.classifiers import build_classifier

MIN_SEGMENT_SECONDS = 0.15


def kl_divergence(target: torch.Tensor, pred: torch.Tensor, epsilon: float = 1e-6) -> torch.Tensor:
    """KL(target || pred) over the last dim: `sum p (log(p + eps) - log(q + eps))`, `[..., L] -> [...]`.

    audiocraft puts `eps` on `q` only; putting it on both sides makes KL(p || p) exactly 0 and
    changes any value by less than `L * eps` (5e-4 for 527 labels).
    """
    return (target * ((target + epsilon).log() - (pred + epsilon).log())).sum(-1)


class KLDivergence(Metric):
    """KL(reference || generated) (`kl`, the paper's KL) and KL(generated || reference) (`kl_gen_ref`).

    Args:
        classifier: `AUDIO_CLASSIFIERS` spec (default `ast`) or a classifier module.
        epsilon: added to both distributions inside the logs.
    """

    full_state_update = False

    def __init__(self, classifier="ast", epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.classifier = build_classifier(classifier)
        self.epsilon = epsilon
        # per clip: KL summed over its segment pairs, and the number of pairs
        self.add_state("kl_ref_gen", default=[], dist_reduce_fx="cat")
        self.add_state("kl_gen_ref", default=[], dist_reduce_fx="cat")
        self.add_state("segments", default=[], dist_reduce_fx="cat")

    def segment(self, wav: torch.Tensor, sample_rate: int) -> list[list[torch.Tensor]]:
        """`[B, C, N]` -> per clip, its mono segments at the classifier rate (no padding, short tail dropped)."""
        mono = mono_at(wav, sample_rate, self.classifier.sample_rate)
        length = round(self.classifier.segment_seconds * self.classifier.sample_rate)
        shortest = MIN_SEGMENT_SECONDS * self.classifier.sample_rate
        return [[s for s in torch.split(clip, length) if s.shape[-1] > shortest] for clip in mono]

    @torch.no_grad()
    def label_distributions(self, wav: torch.Tensor, sample_rate: int) -> list[torch.Tensor]:
        """`[B, C, N]` -> per clip, label probabilities `[S, 527]` for its S segments."""
        clips = self.segment(wav, sample_rate)
        flat = [s for segments in clips for s in segments]
        if not flat:
            return [wav.new_zeros(0, self.classifier.num_labels) for _ in clips]
        probs = self.classifier(flat).softmax(dim=-1).to(wav.device)
        return list(torch.split(probs, [len(s) for s in clips]))

    def update(self, generated: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> None:
        """`generated`, `reference`: `[B, C, N]` waveforms at `sample_rate`, clip b paired with clip b."""
        if generated.shape[0] != reference.shape[0]:
            raise ValueError(f"{generated.shape[0]} generated clips for {reference.shape[0]} references")
        sums_rg, sums_gr, counts = [], [], []
        for gen, ref in zip(self.label_distributions(generated, sample_rate), self.label_distributions(reference, sample_rate)):
            pairs = min(len(gen), len(ref))
            gen, ref = gen[:pairs].double(), ref[:pairs].double()
            sums_rg.append(kl_divergence(ref, gen, self.epsilon).sum())
            sums_gr.append(kl_divergence(gen, ref, self.epsilon).sum())
            counts.append(float(pairs))
        self.kl_ref_gen.append(torch.stack(sums_rg))
        self.kl_gen_ref.append(torch.stack(sums_gr))
        self.segments.append(torch.tensor(counts, dtype=torch.float64, device=generated.device))

    def per_clip(self) -> dict[str, torch.Tensor]:
        """Values `[B]` of the clips of the last `update` (NaN for a clip with no segment of 0.15 s)."""
        counts = self.segments[-1]
        return {"kl": self.kl_ref_gen[-1] / counts, "kl_gen_ref": self.kl_gen_ref[-1] / counts}

    def compute(self) -> dict[str, torch.Tensor]:
        """Means over all segment pairs; NaN when no clip had a segment."""
        total = dim_zero_cat(self.segments).sum()
        return {
            "kl": dim_zero_cat(self.kl_ref_gen).sum() / total,
            "kl_gen_ref": dim_zero_cat(self.kl_gen_ref).sum() / total,
        }
