"""Where pretrained weights come from: a local file or folder, a URL, or a Hugging Face hub id.

Kept apart from the networks (as in timm): a network is built with random weights, then a loader
here fills it. Anything that cannot be found raises `MissingWeightsError` naming the source and
where to put the weights; nothing is downloaded when the hub or the URL is unreachable.
"""
from __future__ import annotations

import contextlib
import functools
import re
import socket
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, TypeVar
from urllib.parse import urlparse

import torch

from vmas_lightning.errors import InputFileError, MissingWeightsError, VMASError

T = TypeVar("T")

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_url(source: str) -> bool:
    return urlparse(source).scheme in ("http", "https", "s3", "gs")


def is_hub_id(source: str) -> bool:
    """`org/name` that is not an existing local path and does not look like one."""
    return not Path(source).expanduser().exists() and bool(_HUB_ID.match(source)) and not source.startswith(".")


def load_checkpoint_file(source: str | Path, what: str, how: str) -> dict[str, Any]:
    """`torch.load` a local file or a URL (through torch.hub's cache) onto the CPU."""
    source = str(source)
    if is_url(source):
        try:
            return torch.hub.load_state_dict_from_url(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # no network, 404, truncated download: all the user's to fix
            raise MissingWeightsError(what, source, f"{how} ({type(exc).__name__})") from exc
    path = Path(source).expanduser()
    if not path.is_file():
        raise MissingWeightsError(what, source, how)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, not a checkpoint, pickled objects
        raise InputFileError(path, f"not a readable PyTorch checkpoint ({type(exc).__name__})") from exc


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers at all (one TCP connect), so an offline machine fails
    at once instead of after the hub client's retries; never with `HF_HUB_OFFLINE=1`."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def from_pretrained(load: Callable[..., T], source: str | Path, what: str, how: str) -> T:
    """Call a Hugging Face `from_pretrained`-style `load(source, **kw)` on a local folder or a hub id.

    A local folder that does not exist is not sent to the hub; one that cannot be loaded (no or
    truncated weights, a broken config) is a one-line `InputFileError`. A hub id is looked up in the
    local hub cache first, then on the hub if it is reachable; otherwise `MissingWeightsError`.
    """
    source = str(source)
    path = Path(source).expanduser()
    if path.is_dir():
        try:
            return load(str(path))
        except Exception as exc:  # missing or truncated weights, unreadable config: the folder is broken
            problem = " ".join(str(exc).split()).split(". ")[0] or type(exc).__name__
            raise InputFileError(path, f"not a readable folder of {what} ({problem}); {how}") from None
    if not is_hub_id(source):
        raise MissingWeightsError(what, source, how)
    hub_how = f"download it on a connected machine (hf download {source} --local-dir DIR) and set that key to DIR"
    with contextlib.suppress(OSError, ValueError):  # not in the local hub cache: try the hub
        return load(source, local_files_only=True)
    if not hub_reachable():
        raise MissingWeightsError(what, f"{source} (hub unreachable)", hub_how)
    try:
        return load(source)
    except (OSError, ValueError) as exc:  # unknown or gated repo
        raise MissingWeightsError(what, source, hub_how) from exc


def load_hf_model(classes: dict[str, Callable[..., Any]], source: str | Path, what: str, how: str) -> Any:
    """A transformers model from a local folder or hub id, built by `classes[config.model_type].from_pretrained`.

    Refused in one line: a folder of another model type (not in `classes`), and weights that leave
    any tensor of the model unloaded (another size, or a different model under the same type).
    """
    from transformers import AutoConfig

    model_type = from_pretrained(AutoConfig.from_pretrained, source, what, how).model_type
    if model_type not in classes:
        raise VMASError(f"{source}: holds a '{model_type}' model, not {what}; {how}")
    load = functools.partial(classes[model_type].from_pretrained, output_loading_info=True)
    model, info = from_pretrained(load, source, what, how)
    unloaded = sorted({*info["missing_keys"], *(k if isinstance(k, str) else k[0] for k in info["mismatched_keys"])})
    if unloaded:
        raise VMASError(f"{source}: {len(unloaded)} tensors of {what} are not in its weights (e.g. {unloaded[0]}): "
                        f"another size or model; {how}")
    return model


def check_state_dict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, what: str, how: str) -> None:
    """One line unless `state` holds exactly the tensors of `model`, with their shapes."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    resized = sorted(k for k in set(expected) & set(state) if state[k].shape != expected[k].shape)
    problems = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
    problems += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
    if resized:
        k = resized[0]
        problems.append(f"{len(resized)} of another shape (e.g. {k} {list(state[k].shape)}, "
                        f"expected {list(expected[k].shape)})")
    if problems:
        raise VMASError(f"{source}: not {what} of this kind and size: tensors {'; '.join(problems)}; {how}")


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Random weights drawn inside are the same for `seed` in every process; the global RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
