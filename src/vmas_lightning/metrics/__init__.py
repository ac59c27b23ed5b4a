"""Evaluation metrics of `vmas test`: FAD, KL, MV-Align, beat alignment and video <-> music retrieval (docs/EVALUATION.md)."""
from vmas_lightning.metrics.beat_alignment import BeatAlignment
from vmas_lightning.metrics.fad import FrechetAudioDistance
from vmas_lightning.metrics.frechet import frechet_distance, gaussian_from_moments
from vmas_lightning.metrics.kl import KLDivergence, kl_divergence
from vmas_lightning.metrics.mv_align import MVAlign, mv_align, mv_align_score
from vmas_lightning.metrics.retrieval import RetrievalRecall, recall_at_k
from vmas_lightning.metrics.suite import EvaluationSuite, paper_table

__all__ = [
    "BeatAlignment", "EvaluationSuite", "FrechetAudioDistance", "KLDivergence", "MVAlign", "RetrievalRecall",
    "frechet_distance", "gaussian_from_moments", "kl_divergence", "mv_align", "mv_align_score",
    "paper_table", "recall_at_k",
]
