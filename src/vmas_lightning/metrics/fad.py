"""Frechet Audio Distance: Frechet distance between Gaussian fits of generated and reference embeddings.

Every embedding frame of every clip is one sample of its set (the TF FAD / MusicGen protocol).
States are float64 moments (sum, sum of outer products, count), summed across processes, so the
result does not depend on how clips are split between GPUs. Reference statistics can be cached in a
file keyed by the embedder's weights and a reference-set id: a large reference set is embedded once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from torchmetrics import Metric

from vmas_lightning.errors import VMASError
from vmas_lightning.files import atomic_torch_save
from vmas_lightning.metrics.embedders import build_embedder
from vmas_lightning.metrics.frechet import frechet_distance, gaussian_from_moments


def load_reference_stats(path: str | Path, key: str) -> Optional[dict[str, torch.Tensor]]:
    """`{mean [D], cov [D, D], count}` stored under `key` in the cache file, or None."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        cache = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise VMASError(f"{path}: unreadable reference statistics cache ({type(exc).__name__}); delete it") from exc
    return cache.get(key)


def save_reference_stats(path: str | Path, key: str, stats: dict[str, torch.Tensor]) -> None:
    """Add (or replace) `key` in the cache file, keeping the other keys."""
    path = Path(path)
    cache = torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else {}
    cache[key] = {name: value.detach().cpu() for name, value in stats.items()}
    atomic_torch_save(cache, path)


class FrechetAudioDistance(Metric):
    """FAD between generated and reference audio.

    Args:
        embedder: `AUDIO_EMBEDDERS` spec (default `vggish`) or an embedder module.
        reference_stats_cache: file of cached reference statistics. When it holds the key
            `<embedder cache_key>|<reference_set>`, references passed to `update` are ignored;
            otherwise `compute` stores the reference statistics there (process 0 writes).
        reference_set: id of the reference clips (e.g. the test split's path); needed with the cache.
    """

    full_state_update = False

    def __init__(self, embedder="vggish", reference_stats_cache: Optional[str] = None,
                 reference_set: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.embedder = build_embedder(embedder)
        dim = self.embedder.dim
        for side in ("generated", "reference"):
            self.add_state(f"{side}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        if reference_stats_cache and not reference_set:
            raise VMASError("reference_stats_cache needs reference_set: the id of the reference clips it caches")
        self.cache_path = reference_stats_cache
        self.cache_key = f"{self.embedder.cache_key}|{reference_set}"
        self.cached_reference = load_reference_stats(reference_stats_cache, self.cache_key) if reference_stats_cache else None

    def _accumulate(self, side: str, embeddings: torch.Tensor) -> None:
        flat = embeddings.reshape(-1, embeddings.shape[-1]).double()
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + flat.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + flat.T @ flat)
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + flat.shape[0])

    def update(self, generated: torch.Tensor, reference: Optional[torch.Tensor], sample_rate: int) -> None:
        """`generated`, `reference`: `[B, C, N]` waveforms at `sample_rate` (reference may be None when cached)."""
        self._accumulate("generated", self.embedder(generated, sample_rate))
        if reference is not None and self.cached_reference is None:
            self._accumulate("reference", self.embedder(reference, sample_rate))

    def reference_stats(self) -> dict[str, torch.Tensor]:
        """`{mean, cov, count}` of the reference set: from the cache, else from the (synced) states."""
        if self.cached_reference is not None:
            return self.cached_reference
        if self.reference_count < 2:
            raise VMASError("FAD needs at least 2 reference embeddings (references too short or not given)")
        mean, cov = gaussian_from_moments(self.reference_sum, self.reference_outer, self.reference_count)
        return {"mean": mean, "cov": cov, "count": self.reference_count.clone()}

    def compute(self) -> torch.Tensor:
        if self.generated_count < 2:
            raise VMASError("FAD needs at least 2 generated embeddings (clips shorter than one embedder frame?)")
        mean, cov = gaussian_from_moments(self.generated_sum, self.generated_outer, self.generated_count)
        reference = self.reference_stats()
        if self.cache_path and self.cached_reference is None and (not dist.is_initialized() or dist.get_rank() == 0):
            save_reference_stats(self.cache_path, self.cache_key, reference)
        return frechet_distance(mean, cov, reference["mean"].to(mean.device), reference["cov"].to(mean.device))
