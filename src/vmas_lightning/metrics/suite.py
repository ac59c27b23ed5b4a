"""`EvaluationSuite`: every metric of `vmas test` in one module, its JSON/CSV outputs and the paper table.

All ranks call `update` on their own clips and then `compute` / `save` together; metric states sync
through torchmetrics and per-clip rows through `all_gather_object`, so 1 and N processes give the
same numbers on the same clips.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torchmetrics import MeanMetric

from vmas_lightning.beats import BeatConfig
from vmas_lightning.errors import VMASError
from vmas_lightning.metrics.beat_alignment import KEYS as ALIGNMENT_KEYS
from vmas_lightning.metrics.beat_alignment import BeatAlignment
from vmas_lightning.metrics.fad import FrechetAudioDistance
from vmas_lightning.metrics.kl import KLDivergence
from vmas_lightning.metrics.mv_align import MIXED, MODEL_RATE_FRAMES, SOURCE_NATIVE_RATE, MVAlign, VideoPeaks
from vmas_lightning.metrics.retrieval import RetrievalRecall
from vmas_lightning.metrics.synthetic import SyntheticTaskMetrics, has_truth

METRICS_FILE, CLIPS_FILE = "metrics.json", "clips.csv"
# Teacher-forced cross-entropy of the reference tokens given the clip's video, another clip's video
# and the null condition, and the first at the beat-weighted steps and the others (`VMASModule.video_reliance`).
CROSS_ENTROPY_KEYS = ("ce", "ce_shuffled_video", "ce_null", "ce_beats", "ce_off_beats")
CLIP_COLUMNS = ("id", "kl", "kl_gen_ref", "mv_align", "mv_align_protocol", "alignment_z", "alignment_percentile",
                "onset_alignment_z", "onset_alignment_percentile", "style", "predicted_style", "onset_f1", "onsets",
                "true_onsets", *CROSS_ENTROPY_KEYS)
SYNTHETIC_KEYS = ("style_accuracy", "onset_precision", "onset_recall", "onset_f1", "onsets_per_clip", "true_onsets_per_clip")
# Reference rows of `vmas test` (`evaluation.reference_rows`), scored with the same metrics as the model.
# `generated_for_another_video` is the model's own control: what it generated for the previous
# clip's video, scored against this clip (the shuffled-video value of every per-clip metric).
REFERENCE_ROWS = ("ground_truth", "codec_round_trip", "another_clip", "generated_for_another_video")
# Embedders and classifiers whose numbers follow the paper's protocol (VGGish FAD; AudioSet KL).
PAPER_EMBEDDERS, PAPER_CLASSIFIERS = ("vggish",), ("passt", "ast")

# SPEC section 8: (FAD, KL, MV-Align) per dataset; None where the paper gives no number.
PAPER_RESULTS = {
    "MusicCaps": {
        "CMT": (16.2, 1.42, 0.18), "Video2Music": (24.7, 1.35, 0.19), "VidMusicGen": (6.91, 1.26, 0.17),
        "Vid2MLDM": (8.99, 1.15, 0.20), "V2Meow": (4.62, None, None), "VMAs": (4.07, 1.09, 0.22),
    },
    "DISCO-MV": {
        "CMT": (3.70, 1.82, 0.34), "Video2Music": (4.36, 1.93, 0.29), "VidMusicGen": (2.93, 1.60, 0.25),
        "Vid2MLDM": (3.21, 1.41, 0.32), "VMAs": (2.38, 1.34, 0.35),
    },
}
PAPER_RECALL_AT_10 = {"VMAs": 26.7, "MVPt (CLIP)": 18.1, "MVPt (Hiera)": 17.3}  # %, DISCO-MV test, 2,000 clips


def _is_main_process() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def _plain(value: Any) -> Any:
    """Tensor / float -> JSON value (non-finite -> None)."""
    if torch.is_tensor(value):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EvaluationSuite(nn.Module):
    """FAD, KL (both directions), MV-Align, the beat alignment against shifted music and video <->
    music retrieval over the evaluated clips; on clips with synthetic ground truth (demo data) also
    style accuracy and onsets against the cuts (`metrics.synthetic`), and teacher-forced
    cross-entropies when given.

    Args:
        embedder: FAD embedder spec (`vggish`, `clap`, `encodec`, `demo_style`) or module.
        classifier: KL classifier spec (`ast`, `passt`, `demo_style`) or module; a classifier with
            `labels` (demo_style) also gives the style accuracy.
        reference_stats_cache, reference_set: FAD reference statistics cache (see `FrechetAudioDistance`).
        retrieval_ks: the K of Recall@K.
        beats, token_rate: music beats and matching window of the beat alignment (`BeatAlignment`).
    """

    def __init__(self, embedder="vggish", classifier="ast", reference_stats_cache: Optional[str] = None,
                 reference_set: Optional[str] = None, retrieval_ks: Sequence[int] = (1, 10),
                 beats: Optional[BeatConfig] = None, token_rate: float = 50.0):
        super().__init__()
        self.fad = FrechetAudioDistance(embedder, reference_stats_cache, reference_set)
        self.kl = KLDivergence(classifier)
        self.mv_align = MVAlign()
        self.beat_alignment = BeatAlignment(beats, token_rate)
        self.retrieval = RetrievalRecall(tuple(retrieval_ks))
        self.synthetic = SyntheticTaskMetrics(self.kl.classifier)
        self.cross_entropy = nn.ModuleDict({key: MeanMetric(nan_strategy="ignore") for key in CROSS_ENTROPY_KEYS})
        self.rows: list[dict[str, Any]] = []

    def update(
        self,
        generated: torch.Tensor,
        reference: Optional[torch.Tensor],
        sample_rate: int,
        video_peaks: Optional[Sequence[VideoPeaks]],
        video_features: Optional[torch.Tensor],
        music_features: Optional[torch.Tensor],
        ids: Sequence[str],
        metas: Optional[Sequence[dict[str, Any]]] = None,
        cross_entropy: Optional[dict[str, torch.Tensor]] = None,
        video_beats: Optional[torch.Tensor] = None,
    ) -> None:
        """One batch of B clips.

        Args:
            generated, reference: waveforms `[B, 1, N]` at `sample_rate` (reference None only when
                FAD reference statistics are cached; KL then is skipped for the batch).
            video_peaks: the B clips' MV-Align video peaks (`metrics.mv_align.source_peaks` of the
                source video, or `frames_peaks` of decoded frames); None skips MV-Align.
            video_features, music_features: pooled `[B, D]` features in the shared space (None skips retrieval).
            ids: the B clip ids (rows of the per-clip CSV).
            metas: the B clips' metadata; when every one has the synthetic task's truth (`style`,
                `events_s`), the synthetic metrics are updated.
            cross_entropy: per-clip `[B]` values of `CROSS_ENTROPY_KEYS` (averaged over clips; NaN: not measured for that clip).
            video_beats: 0/1 `[B, T]` video beats on the token grid, for the beat alignment (None skips it).
        """
        if len(ids) != generated.shape[0]:
            raise ValueError(f"{len(ids)} ids for {generated.shape[0]} generated clips")
        rows = [{"id": str(clip_id)} for clip_id in ids]
        self.fad.update(generated, reference, sample_rate)
        if reference is not None:
            self.kl.update(generated, reference, sample_rate)
            self._add_columns(rows, self.kl.per_clip())
        if video_peaks is not None:
            self.mv_align.update(video_peaks, generated, sample_rate)
            self._add_columns(rows, self.mv_align.per_clip())
        if video_beats is not None:
            self.beat_alignment.update(generated, sample_rate, video_beats)
            self._add_columns(rows, self.beat_alignment.per_clip())
        if video_features is not None and music_features is not None:
            self.retrieval.update(video_features, music_features)
        if metas is not None and all(has_truth(meta) for meta in metas):
            self.synthetic.update(generated, sample_rate, metas)
            self._add_columns(rows, {"style": [meta["style"] for meta in metas], **self.synthetic.per_clip()})
        if cross_entropy is not None:
            for key, per_clip in cross_entropy.items():
                self.cross_entropy[key].update(per_clip)
            self._add_columns(rows, cross_entropy)
        self.rows.extend(rows)

    @staticmethod
    def _add_columns(rows: list[dict[str, Any]], columns: dict[str, Any]) -> None:
        for name, values in columns.items():
            for row, value in zip(rows, values.tolist() if torch.is_tensor(values) else values):
                row[name] = value

    def clip_rows(self) -> list[dict[str, Any]]:
        """Per-clip rows of all processes, sorted by id (a collective call under DDP)."""
        rows = self.rows
        if dist.is_initialized():
            gathered: list[list[dict[str, Any]]] = [None] * dist.get_world_size()  # type: ignore[list-item]
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        return sorted(rows, key=lambda row: row["id"])

    def compute(self) -> dict[str, Any]:
        """`fad`, `kl`, `kl_gen_ref`, `mv_align` with `mv_align_protocol`, `alignment_z`,
        `alignment_percentile`, `onset_alignment_z`, `onset_alignment_percentile`, `recall@K`,
        `recall_m2v@K` (None when not measured), the embedder / classifier names and whether their
        weights are calibrated, and `num_clips`."""
        num_clips = len(self.clip_rows())
        if num_clips == 0:
            raise VMASError("no clip was evaluated: the test set is empty")
        metrics: dict[str, Any] = {"fad": self.fad.compute()}
        kl = self.kl.compute() if self.kl.update_called else {"kl": None, "kl_gen_ref": None}
        metrics.update(kl)
        metrics.update(self.mv_align.compute() if self.mv_align.update_called
                       else {"mv_align": None, "mv_align_protocol": None})
        metrics.update(self.beat_alignment.compute() if self.beat_alignment.update_called else dict.fromkeys(ALIGNMENT_KEYS))
        recall_keys = [f"recall{d}@{k}" for d in ("", "_m2v") for k in self.retrieval.ks]
        metrics.update(self.retrieval.compute() if self.retrieval.update_called else dict.fromkeys(recall_keys))
        metrics.update(self.synthetic.compute() if self.synthetic.update_called else dict.fromkeys(SYNTHETIC_KEYS))
        for key, mean in self.cross_entropy.items():
            metrics[key] = mean.compute() if mean.update_called else None
        metrics = {name: _plain(value) for name, value in metrics.items()}
        embedder, classifier = self.fad.embedder, self.kl.classifier
        metrics.update(
            embedder=embedder.name,
            embedder_weights=embedder.cache_key,
            embedder_calibrated=bool(embedder.calibrated),
            classifier=classifier.name,
            classifier_weights=classifier.source,
            classifier_calibrated=bool(classifier.calibrated),
            num_clips=num_clips,
        )
        metrics["paper_protocol"] = paper_protocol(metrics)
        notes = []
        if not (embedder.calibrated and classifier.calibrated):
            notes.append("random (uncalibrated) embedder or classifier weights: FAD/KL are smoke-test numbers only")
        elif not metrics["paper_protocol"]:
            notes.append(f"FAD by '{embedder.name}' and KL by '{classifier.name}', not the paper's VGGish / "
                         "AudioSet classifier: compare with other runs of the same evaluators, not with the paper")
        if metrics["mv_align"] is not None and not mv_align_comparable(metrics):
            notes.append(f"MV-Align on {MV_ALIGN_SOURCES[metrics['mv_align_protocol']]}, not the source "
                         "videos at their native rate and size (the AV-Align protocol): not comparable with the paper's")
        if notes:
            metrics["note"] = "; ".join(notes)
        return metrics

    def save(self, output_dir: str | Path, metrics: dict[str, Any]) -> Path:
        """Write `metrics.json` and the per-clip `clips.csv` into `output_dir` (process 0 writes;
        every process must call it). Returns the folder."""
        rows = self.clip_rows()
        output_dir = Path(output_dir)
        if _is_main_process():
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
            with open(output_dir / CLIPS_FILE, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=CLIP_COLUMNS, restval="")
                writer.writeheader()
                writer.writerows({k: _plain(v) for k, v in row.items()} for row in rows)
        return output_dir

    def reset(self) -> None:
        for metric in (self.fad, self.kl, self.mv_align, self.beat_alignment, self.retrieval, self.synthetic,
                       *self.cross_entropy.values()):
            metric.reset()
        self.rows = []


def paper_protocol(metrics: dict[str, Any]) -> bool:
    """Whether FAD and KL were measured with calibrated evaluators of the paper's kind."""
    return (metrics.get("embedder") in PAPER_EMBEDDERS and metrics.get("classifier") in PAPER_CLASSIFIERS
            and bool(metrics.get("embedder_calibrated")) and bool(metrics.get("classifier_calibrated")))


MV_ALIGN_SOURCES = {MODEL_RATE_FRAMES: "the model-rate frames (resampled and resized for the model)",
                    MIXED: "the model-rate frames for some clips"}


def mv_align_comparable(metrics: dict[str, Any]) -> bool:
    """Whether MV-Align followed the AV-Align protocol for every clip (`mv_align_protocol`)."""
    return metrics.get("mv_align_protocol") == SOURCE_NATIVE_RATE


def format_cell(value: Optional[float], digits: int) -> str:
    """A table cell: `value` to `digits` decimals, "-" for None, never "-0.000"."""
    if value is None:
        return "-"
    return f"{0.0 if abs(value) < 0.5 * 10**-digits else value:.{digits}f}"  # no "-0.000"


# (key, header, digits, scale) of `results_table`
RESULT_COLUMNS = (
    ("fad", "FAD", 3, 1), ("kl", "KL", 3, 1), ("mv_align", "MV-Align", 3, 1), ("alignment_z", "align z", 2, 1),
    ("alignment_percentile", "align %ile", 0, 1), ("onset_alignment_z", "onset align z", 2, 1),
    ("style_accuracy", "style acc", 2, 1),
    ("onset_f1", "onset F1", 2, 1), ("onsets_per_clip", "onsets/clip", 1, 1), ("recall@1", "R@1 (%)", 1, 100),
    ("recall@10", "R@10 (%)", 1, 100), ("ce", "CE", 3, 1), ("ce_shuffled_video", "CE other video", 3, 1),
    ("ce_null", "CE null", 3, 1), ("ce_beats", "CE at beats", 3, 1), ("ce_off_beats", "CE off beats", 3, 1),
)


def results_table(metrics: dict[str, Any], name: str = "this run", others: Optional[dict[str, dict[str, Any]]] = None) -> str:
    """Markdown table of a run's metrics under its reference rows (`metrics["reference_rows"]`), then
    the `others` runs (name -> metrics) on the same clips; columns that no row measured are left out."""
    rows = [(row.replace("_", " "), values) for row, values in metrics.get("reference_rows", {}).items()]
    rows += [(f"**{label}**" + (" (frames from video files)" if values.get("input_path") == "video_file" else ""), values)
             for label, values in {name: metrics, **(others or {})}.items()]
    columns = [c for c in RESULT_COLUMNS if any(values.get(c[0]) is not None for _, values in rows)]
    if any(values.get("true_onsets_per_clip") is not None for _, values in rows):
        columns.insert(next(i for i, c in enumerate(columns) if c[0] == "onsets_per_clip") + 1,
                       ("true_onsets_per_clip", "true onsets/clip", 1, 1))
    lines = ["| audio | " + " | ".join(c[1] for c in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, values in rows:
        cells = [format_cell(None if values.get(k) is None else scale * values[k], digits) for k, _, digits, scale in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_table(metrics: dict[str, Any], dataset: str = "DISCO-MV", name: str = "this run") -> str:
    """Markdown table of this run's FAD / KL / MV-Align / R@10 next to the paper's (SPEC section 8);
    the run's MV-Align only when it followed the protocol (`mv_align_comparable`), else "-"."""
    if dataset not in PAPER_RESULTS:
        raise VMASError(f"no paper numbers for dataset '{dataset}'; known: {', '.join(PAPER_RESULTS)}")
    lines = [f"| method ({dataset}) | FAD | KL | MV-Align | R@10 (%) |", "|---|---|---|---|---|"]
    rows = dict(PAPER_RESULTS[dataset])
    if dataset == "DISCO-MV":
        rows.update({k: (None, None, None) for k in PAPER_RECALL_AT_10 if k not in rows})
    for method, (fad, kl, align) in rows.items():
        recall = PAPER_RECALL_AT_10.get(method) if dataset == "DISCO-MV" else None
        lines.append(f"| {method} (paper) | {format_cell(fad, 2)} | {format_cell(kl, 2)} | {format_cell(align, 3)} | {format_cell(recall, 1)} |")
    recall = metrics.get("recall@10")
    lines.append(
        f"| **{name}** | {format_cell(metrics.get('fad'), 2)} | {format_cell(metrics.get('kl'), 2)} | "
        f"{format_cell(metrics.get('mv_align') if mv_align_comparable(metrics) else None, 3)} | "
        f"{format_cell(None if recall is None else 100 * recall, 1)} |"
    )
    return "\n".join(lines)
