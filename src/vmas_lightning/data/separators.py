"""Vocal removal for curation (SPEC section 1, filter 2): keep every stem but the vocals."""
from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Callable, Iterator, Optional

import librosa
import numpy as np
import torch
import yaml

from vmas_lightning.video_io import fit_length
from vmas_lightning.errors import MissingWeightsError
from vmas_lightning.models.pretrained import hub_reachable
from vmas_lightning.registry import SOURCE_SEPARATORS

Separator = Callable[[np.ndarray, int], np.ndarray]
DEMUCS_HOW = (
    "on a connected machine run `hf download adefossez/HTDemucs --local-dir DIR` (or any demucs command once, "
    "which fills the Hugging Face cache) and pass --separator '{name: htdemucs, repo: DIR}' or copy the cache; "
    "or use --separator none"
)


@SOURCE_SEPARATORS.register("none")
def no_separation() -> Separator:
    """Keep the soundtrack as it is."""
    return lambda wav, sample_rate: wav


@contextlib.contextmanager
def seeded_random(seed: int) -> Iterator[None]:
    """Python's global `random` seeded inside (demucs draws its time shifts from it), restored after."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def accompaniment(model: torch.nn.Module, wav: np.ndarray, sample_rate: int, shifts: int = 1) -> np.ndarray:
    """float32 mono `[N]` at `sample_rate` -> the sum of every non-vocal stem, mono, same rate and length.

    The random time shifts of demucs' shift trick are drawn from a fixed seed: the same input gives
    the same output whatever the process did before (in a curation worker: the inputs before it).
    """
    from demucs.apply import apply_model

    mix = librosa.resample(wav, orig_sr=sample_rate, target_sr=model.samplerate) if sample_rate != model.samplerate else wav
    stereo = torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))[None].expand(model.audio_channels, -1)
    scale = stereo.std().clamp_min(1e-8)
    with torch.no_grad(), seeded_random(0):
        stems = apply_model(model, (stereo / scale)[None], shifts=shifts, split=True, progress=False)[0] * scale
    keep = [i for i, name in enumerate(model.sources) if name != "vocals"]
    music = stems[keep].sum(0).mean(0).numpy()
    if sample_rate != model.samplerate:
        music = librosa.resample(music, orig_sr=model.samplerate, target_sr=sample_rate)
    return fit_length(np.asarray(music, dtype=np.float32), len(wav))


def hub_repo_id(name: str) -> str:
    """Hugging Face repository of a demucs model name, as demucs 4.1 names it (`htdemucs` -> `adefossez/HTDemucs`)."""
    from demucs.hf import DEFAULT_NAMESPACE, hf_repo_name

    namespace, _, short = name.rpartition("/")
    return f"{namespace or DEFAULT_NAMESPACE}/{hf_repo_name(short)}"


def load_hub_folder(folder: Path, name: str) -> torch.nn.Module:
    """A demucs bag from a folder in the hub layout: `<name>.yaml` naming the models, one `<sig>.safetensors` each."""
    from demucs.apply import BagOfModels
    from demucs.hf import load_safetensors_model

    bag = yaml.safe_load((folder / f"{name.rpartition('/')[2]}.yaml").read_text())
    models = [load_safetensors_model(folder / f"{sig}.safetensors") for sig in bag["models"]]
    return BagOfModels(models, bag.get("weights"), bag.get("segment"))


def load_demucs(name: str = "htdemucs", repo: Optional[str] = None) -> torch.nn.Module:
    """The demucs model `name`, from `repo` (hub layout or demucs' legacy `.th` layout), else the
    Hugging Face cache, else the hub when it is reachable; `MissingWeightsError` otherwise."""
    from demucs.pretrained import get_model
    from demucs.repo import ModelLoadingError
    from huggingface_hub import snapshot_download

    short = name.rpartition("/")[2]
    try:
        if repo is not None:
            folder = Path(repo).expanduser()
            if not folder.is_dir():
                raise MissingWeightsError("Demucs vocal removal", f"{name} in {folder} (no such folder)", DEMUCS_HOW)
            if (folder / f"{short}.yaml").is_file() and any(folder.glob("*.safetensors")):
                return load_hub_folder(folder, name).eval()
            return get_model(short, repo=folder).eval()
        try:
            cached = Path(snapshot_download(hub_repo_id(name), local_files_only=True))
        except Exception:  # not in the cache (huggingface_hub raises several kinds)
            cached = None
        if cached is not None:
            return load_hub_folder(cached, name).eval()
        if not hub_reachable():
            raise MissingWeightsError("Demucs vocal removal", f"{hub_repo_id(name)} (hub unreachable)", DEMUCS_HOW)
        return get_model(name).eval()
    except (ModelLoadingError, OSError, KeyError, yaml.YAMLError) as err:
        raise MissingWeightsError("Demucs vocal removal", f"{name} ({' '.join(str(err).split())})", DEMUCS_HOW) from None


@SOURCE_SEPARATORS.register("htdemucs")
def htdemucs(model: str = "htdemucs", repo: Optional[str] = None, shifts: int = 1) -> Separator:
    """Hybrid Transformer Demucs (demucs 4.1): returns `separate(wav [N], sample_rate) -> wav [N]`
    without the vocals. `model`: the demucs model name (`htdemucs`, `htdemucs_ft`, ...). Weights: see
    `load_demucs`; nothing is downloaded when the hub is unreachable."""
    network = load_demucs(model, repo)
    return lambda wav, sample_rate: accompaniment(network, wav, sample_rate, shifts)
