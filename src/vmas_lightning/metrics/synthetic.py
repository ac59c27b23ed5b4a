"""Ground-truth metrics of the synthetic demo task: the music's style and whether its notes land on the cuts.

A demo clip (`data.demo`) knows its truth: `meta.style` (which decides tempo, timbre and key) and
`meta.events_s` (the cut times, where the real music starts its notes). For generated music:

- `style_accuracy`: the style classifier (`demo_style`) names the clip's true style;
- `onset_precision`, `onset_recall`, `onset_f1`: onsets of the music (librosa, the paper's onset
  detector and MV-Align's) against the cut times, each cut matched to at most one
  onset within `tolerance_s` (50 ms, mir_eval's onset tolerance), summed over clips;
- `onsets_per_clip` and `true_onsets_per_clip`: means, so over- and under-production show.

The real music of a clip scores 1.0 on all of them (checked in tests/test_synthetic_metrics.py);
music of another clip scores near chance (style 1 in 4; onsets only where cuts coincide).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from torchmetrics import Metric

from vmas_lightning.beats import build_plugin
from vmas_lightning.metrics.audio import mono_at
from vmas_lightning.registry import ONSET_DETECTORS, PluginSpec

ONSET_TOLERANCE_S = 0.05


def count_matches(estimated: Sequence[float], reference: Sequence[float], tolerance: float) -> int:
    """Size of a one-to-one matching of `estimated` to `reference` times with |e - r| <= tolerance.

    Greedy in time order, which is maximal when the reference times are more than 2 * tolerance
    apart (the demo's cuts are >= 0.55 s apart; mir_eval solves the general case by bipartite matching).
    """
    estimated, reference = np.sort(np.asarray(estimated, float)), np.sort(np.asarray(reference, float))
    matches, i = 0, 0
    for time in reference:
        while i < estimated.size and estimated[i] < time - tolerance:
            i += 1
        if i < estimated.size and estimated[i] <= time + tolerance:
            matches, i = matches + 1, i + 1
    return matches


def pitch_class(frequency_hz: float) -> int:
    """Pitch class of a frequency, 0 = C ... 11 = B (equal temperament, A4 = 440 Hz)."""
    return int(round(69 + 12 * np.log2(frequency_hz / 440.0))) % 12


def note_pitch_classes(wav: np.ndarray, sample_rate: int, onsets_s: Sequence[float],
                       span_s: tuple[float, float] = (0.02, 0.12), n_fft: int = 4096) -> list[int]:
    """The strongest chroma bin (0 = C) of mono `wav [N]` from 20 to 120 ms after each onset
    (one zero-padded `n_fft`-point frame per note)."""
    import librosa

    classes = []
    for onset in onsets_s:
        segment = np.asarray(wav[int((onset + span_s[0]) * sample_rate) : int((onset + span_s[1]) * sample_rate)], np.float32)
        segment = np.pad(segment[:n_fft], (0, n_fft - min(n_fft, segment.size)))
        chroma = librosa.feature.chroma_stft(y=segment, sr=sample_rate, n_fft=n_fft, hop_length=n_fft, center=False, tuning=0.0)
        classes.append(int(chroma[:, 0].argmax()))
    return classes


def round_trip_quality(original: Sequence[np.ndarray], decoded: Sequence[np.ndarray], sample_rate: int,
                       metas: Sequence[Mapping[str, Any]], onset_detector: PluginSpec = "librosa",
                       tolerance_s: float = ONSET_TOLERANCE_S) -> dict[str, float]:
    """How well a codec round trip (`decoded`) keeps the demo clips' notes: pitch-class accuracy of each
    note (`meta.notes_hz`), onset precision / recall against the true note onsets (`meta.events_s`),
    the largest peak, the largest DC offset, and the same onset numbers for the `original` audio."""
    detector = build_plugin(ONSET_DETECTORS, onset_detector)
    out: dict[str, float] = {}
    for name, clips in (("original", original), ("decoded", decoded)):
        matched = detected = true = 0
        for wav, meta in zip(clips, metas):
            onsets = detector(wav, sample_rate)
            matched += count_matches(onsets, meta["events_s"], tolerance_s)
            detected, true = detected + len(onsets), true + len(meta["events_s"])
        out[f"{name}_onset_precision"] = matched / max(1, detected)
        out[f"{name}_onset_recall"] = matched / max(1, true)
    hits = [p == pitch_class(f) for wav, meta in zip(decoded, metas)
            for p, f in zip(note_pitch_classes(wav, sample_rate, meta["events_s"]), meta["notes_hz"])]
    out["pitch_class_accuracy"] = float(np.mean(hits))
    out["peak"] = float(max(np.abs(wav).max() for wav in decoded))
    out["dc_offset"] = float(max(abs(float(np.mean(wav))) for wav in decoded))
    return out


def has_truth(meta: Optional[Mapping[str, Any]]) -> bool:
    """Whether a clip's metadata carries the synthetic task's ground truth."""
    return bool(meta) and "style" in meta and "events_s" in meta


class SyntheticTaskMetrics(Metric):
    """Style accuracy and onset precision / recall / F1 against the cuts (see the module docstring).

    Args:
        classifier: a classifier module with `labels` (style names), `sample_rate` and
            `forward(segments) -> logits`; None: style accuracy is not measured.
        onset_detector: `ONSET_DETECTORS` spec.
        tolerance_s: onset matching tolerance.
    """

    full_state_update = False

    def __init__(self, classifier: Optional[torch.nn.Module] = None, onset_detector: PluginSpec = "librosa",
                 tolerance_s: float = ONSET_TOLERANCE_S, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier if getattr(classifier, "labels", None) else None
        self.onset_detector = onset_detector
        self.tolerance_s = tolerance_s
        for name in ("style_correct", "style_clips", "matched", "detected", "true_onsets", "clips"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self._last: dict[str, list[Any]] = {}

    @torch.no_grad()
    def update(self, generated: torch.Tensor, sample_rate: int, metas: Sequence[Mapping[str, Any]]) -> None:
        """`generated [B, C, N]` at `sample_rate`; `metas[b]` holds `style` and `events_s` of clip b."""
        detector = build_plugin(ONSET_DETECTORS, self.onset_detector)
        mono = mono_at(generated, sample_rate, sample_rate).cpu().numpy()
        onsets = [detector(wav, sample_rate) for wav in mono]
        events = [np.asarray(meta["events_s"], dtype=float) for meta in metas]
        matched = [count_matches(o, e, self.tolerance_s) for o, e in zip(onsets, events)]
        self.matched += sum(matched)
        self.detected += sum(len(o) for o in onsets)
        self.true_onsets += sum(len(e) for e in events)
        self.clips += len(metas)
        self._last = {"onsets": [len(o) for o in onsets], "true_onsets": [len(e) for e in events],
                      "onset_f1": [_f1(m, len(o), len(e)) for m, o, e in zip(matched, onsets, events)]}
        if self.classifier is not None:
            classifier_wav = mono_at(generated, sample_rate, self.classifier.sample_rate)
            predicted = self.classifier(list(classifier_wav)).argmax(dim=-1).tolist()
            names = [self.classifier.labels[p] for p in predicted]
            self.style_correct += sum(name == meta["style"] for name, meta in zip(names, metas))
            self.style_clips += len(metas)
            self._last["predicted_style"] = names

    def per_clip(self) -> dict[str, list[Any]]:
        """Per-clip values of the last `update`: `onsets`, `true_onsets`, `onset_f1`, `predicted_style`."""
        return dict(self._last)

    def compute(self) -> dict[str, Optional[torch.Tensor]]:
        precision = self.matched / self.detected if self.detected > 0 else torch.zeros_like(self.matched)
        recall = self.matched / self.true_onsets if self.true_onsets > 0 else torch.zeros_like(self.matched)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else torch.zeros_like(precision)
        return {
            "style_accuracy": self.style_correct / self.style_clips if self.style_clips > 0 else None,
            "onset_precision": precision,
            "onset_recall": recall,
            "onset_f1": f1,
            "onsets_per_clip": self.detected / self.clips,
            "true_onsets_per_clip": self.true_onsets / self.clips,
        }


def _f1(matched: int, detected: int, true: int) -> float:
    return 2 * matched / (detected + true) if detected + true else 1.0
