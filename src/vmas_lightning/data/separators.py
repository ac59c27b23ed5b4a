"""Vocal removal for curation (SPEC section 1, filter 2): keep every stem but the vocals."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import librosa
import numpy as np
import torch

from vmas_lightning.errors import MissingWeightsError
from vmas_lightning.registry import SOURCE_SEPARATORS

Separator = Callable[[np.ndarray, int], np.ndarray]
DEMUCS_HOW = (
    "on a connected machine run `python -m demucs --name htdemucs -o /tmp/x any.wav` once (weights land in "
    "~/.cache/torch/hub/checkpoints) and copy that folder here, or pass repo=DIR holding the model's .th/.yaml files; "
    "or use --separator none"
)


@SOURCE_SEPARATORS.register("none")
def no_separation() -> Separator:
    """Keep the soundtrack as it is."""
    return lambda wav, sample_rate: wav


def accompaniment(model: torch.nn.Module, wav: np.ndarray, sample_rate: int, shifts: int = 1) -> np.ndarray:
    """float32 mono `[N]` at `sample_rate` -> the sum of every non-vocal stem, mono, same rate and length."""
    from demucs.apply import apply_model

    mix = librosa.resample(wav, orig_sr=sample_rate, target_sr=model.samplerate) if sample_rate != model.samplerate else wav
    stereo = torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))[None].expand(model.audio_channels, -1)
    scale = stereo.std().clamp_min(1e-8)
    with torch.no_grad():
        stems = apply_model(model, (stereo / scale)[None], shifts=shifts, split=True, progress=False)[0] * scale
    keep = [i for i, name in enumerate(model.sources) if name != "vocals"]
    music = stems[keep].sum(0).mean(0).numpy()
    if sample_rate != model.samplerate:
        music = librosa.resample(music, orig_sr=model.samplerate, target_sr=sample_rate)
    return np.asarray(music[: len(wav)], dtype=np.float32)


@SOURCE_SEPARATORS.register("htdemucs")
def htdemucs(name: str = "htdemucs", repo: Optional[str] = None, shifts: int = 1) -> Separator:
    """Hybrid Transformer Demucs (demucs 4.1); weights from `repo` or the torch hub cache, never downloaded."""
    from demucs.pretrained import get_model
    from demucs.repo import ModelLoadingError

    if repo is None and not any((Path(torch.hub.get_dir()) / "checkpoints").glob("*.th")):
        raise MissingWeightsError("Demucs vocal removal", name, DEMUCS_HOW)
    try:
        model = get_model(name, repo=Path(repo) if repo else None).eval()
    except (ModelLoadingError, OSError, RuntimeError) as err:
        raise MissingWeightsError("Demucs vocal removal", f"{name} ({' '.join(str(err).split())})", DEMUCS_HOW) from None
    return lambda wav, sample_rate: accompaniment(model, wav, sample_rate, shifts)
