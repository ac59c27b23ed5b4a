"""Plugin registries: every swappable part is named by a short string in the config.

A built-in plugin registers itself with a decorator when its module is imported::

    @VIDEO_ENCODERS.register("efficient_hiera")
    def efficient_hiera(pretrained: str | None = None, **kwargs) -> nn.Module: ...

A third-party package adds plugins through the entry-point group ``vmas_lightning.plugins``;
each entry point names a module (or callable) whose import registers its plugins::

    [project.entry-points."vmas_lightning.plugins"]
    my_encoder = "my_pkg.vmas_plugins"
"""
from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping, Union

from vmas_lightning.errors import VMASError

ENTRY_POINT_GROUP = "vmas_lightning.plugins"

# Modules whose import registers the built-in plugins.
BUILTIN_PLUGIN_MODULES = (
    "vmas_lightning.models.encoders",
    "vmas_lightning.models.decoders",
    "vmas_lightning.models.codecs",
    "vmas_lightning.beats.onsets",
    "vmas_lightning.beats.optical_flow",
    "vmas_lightning.metrics.embedders",
    "vmas_lightning.metrics.classifiers",
    "vmas_lightning.metrics.demo_style",
    "vmas_lightning.data.frame_embedders",
    "vmas_lightning.data.separators",
)


# A plugin in a config: its name, or {"name": ..., **options}.
PluginSpec = Union[str, dict[str, Any]]


class UnknownPluginError(VMASError):
    """A plugin name that no registry entry (built-in or entry point) provides."""


class Registry:
    """Short name -> factory for one kind of plugin."""

    def __init__(self, kind: str, description: str):
        self.kind = kind
        self.description = description
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, factory: Callable[..., Any] | None = None):
        """Register ``factory`` under ``name``; usable as a decorator."""

        def add(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories and self._factories[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._factories[name] = obj
            return obj

        return add if factory is None else add(factory)

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., Any]:
        load_plugins()
        try:
            return self._factories[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise UnknownPluginError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def build(self, spec: str | Mapping[str, Any], **overrides: Any) -> Any:
        """Build a plugin from ``"name"`` or ``{"name": ..., **options}`` plus the caller's ``overrides``
        (values derived from other settings, e.g. an encoder's ``num_frames`` from ``model.sequence``).

        Options the factory does not accept, and a spec option that contradicts an override, fail
        with one line.
        """
        if isinstance(spec, str):
            name, options = spec, {}
        else:
            options = dict(spec)
            if "name" not in options:
                raise VMASError(f"{self.kind} spec {options} has no 'name'; known: {', '.join(self.names())}")
            name = options.pop("name")
        conflicts = [f"{key}: {options[key]!r}" for key, value in overrides.items() if key in options and options[key] != value]
        if conflicts:
            derived = ", ".join(f"{key}={value!r}" for key, value in overrides.items())
            raise VMASError(f"{self.kind} '{name}': {', '.join(conflicts)} contradicts the value vmas derives from "
                            f"the other settings ({derived}); leave it out of the spec")
        options.update(overrides)
        factory = self.get(name)
        check_options(f"{self.kind} '{name}'", factory, options)
        return factory(**options)


def check_options(what: str, factory: Callable[..., Any], options: Mapping[str, Any]) -> None:
    """Raise a one-line error when ``options`` has a key ``factory`` does not accept."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise VMASError(f"{what} has no option {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted)}")


VIDEO_ENCODERS = Registry("video_encoder", "video frames [B, 3, F, H, W] -> features [B, S, D]")
MUSIC_DECODERS = Registry("music_decoder", "autoregressive token decoder cross-attending to video")
AUDIO_CODECS = Registry("audio_codec", "waveform <-> discrete tokens [B, K, T]")
ONSET_DETECTORS = Registry("onset_detector", "music beats: waveform -> onset times")
OPTICAL_FLOWS = Registry("optical_flow", "video beats: frames -> mean flow magnitude per frame pair")
AUDIO_EMBEDDERS = Registry("audio_embedder", "FAD embeddings: waveform -> [N, D]")
AUDIO_CLASSIFIERS = Registry("audio_classifier", "KL: waveform -> AudioSet label probabilities [527]")
FRAME_EMBEDDERS = Registry("frame_embedder", "curation: frames -> embeddings for visual variety")
SOURCE_SEPARATORS = Registry("source_separator", "curation: vocal removal")

REGISTRIES: dict[str, Registry] = {
    r.kind: r
    for r in (
        VIDEO_ENCODERS,
        MUSIC_DECODERS,
        AUDIO_CODECS,
        ONSET_DETECTORS,
        OPTICAL_FLOWS,
        AUDIO_EMBEDDERS,
        AUDIO_CLASSIFIERS,
        FRAME_EMBEDDERS,
        SOURCE_SEPARATORS,
    )
}

_loaded = False


def load_plugins() -> None:
    """Import the built-in plugin modules and every entry point of ``vmas_lightning.plugins`` once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_PLUGIN_MODULES:
        importlib.import_module(module)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the CLI
            raise VMASError(f"plugin entry point '{ep.name} = {ep.value}' failed to load: {exc}") from exc
        if callable(loaded) and not inspect.isclass(loaded) and not inspect.ismodule(loaded):
            loaded()
