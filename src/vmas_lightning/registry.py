"""Plugin registries: every swappable part is named by a short string in the config.

A built-in plugin registers itself with a decorator when its module is imported::

    @VIDEO_ENCODERS.register("efficient_hiera")
    def efficient_hiera(num_frames: int, frame_size: int, size: str = "base", ...) -> nn.Module: ...

Built-in and third-party plugins load the same way: through the entry-point group
``vmas_lightning.plugins`` (vmas's own in its pyproject.toml), each entry point naming a module (or
callable) whose import registers its plugins::

    [project.entry-points."vmas_lightning.plugins"]
    my_encoder = "my_pkg.vmas_plugins"

In a config a plugin is ``name`` or ``{name: ..., **options}``. Each kind has a typed spec
(`VideoEncoderSpec`, ...) that the config parser expands to every option of the plugin's factory
with its default, checked against the factory's signature (`Registry.expand`): `--print_config` and a
run's saved config show them all, and a misspelt option, a wrongly typed value or a value vmas
derives from other settings (an encoder's `num_frames`) stops `vmas` with one line before anything
is trained.
"""
from __future__ import annotations

import copy
import inspect
import json
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping, Optional, Union

from jsonargparse import ArgumentError, ArgumentParser
from jsonargparse.typing import register_type

from vmas_lightning import contracts
from vmas_lightning.contracts import missing_members
from vmas_lightning.errors import VMASError

ENTRY_POINT_GROUP = "vmas_lightning.plugins"

# A plugin in code: its name, or {"name": ..., **options} (configs use the typed specs below).
PluginSpec = Union[str, dict[str, Any]]


class UnknownPluginError(VMASError):
    """A plugin name that no registry entry (built-in or entry point) provides."""


class Registry:
    """Short name -> factory for one kind of plugin.

    Args:
        kind: the kind's name in messages (`video_encoder`).
        description: what a plugin of this kind does, for `vmas plugins`.
        derived: factory arguments vmas derives from other settings and passes at build time
            (an encoder's `num_frames`); a spec may not set them.
        contract: the `typing.Protocol` (`vmas_lightning.contracts`) whose members a built plugin must
            have; None: anything goes.
    """

    def __init__(self, kind: str, description: str, derived: tuple[str, ...] = (), contract: Optional[type] = None):
        self.kind = kind
        self.description = description
        self.derived = derived
        self.contract = contract
        self._factories: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, factory: Callable[..., Any] | None = None):
        """Register ``factory`` under ``name``; usable as a decorator."""

        def add(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._factories and self._factories[name] is not obj:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            if "name" in inspect.signature(obj).parameters:
                raise ValueError(f"{self.kind} '{name}': an option called 'name' would clash with the spec's plugin name")
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

    def options(self, name: str) -> dict[str, str]:
        """Plugin ``name``'s options (less `derived`) -> `"type = default"` (or `"type, required"`)."""
        params = inspect.signature(self.get(name)).parameters.values()
        return {p.name: (f"{p.annotation} = {p.default!r}" if p.default is not p.empty else f"{p.annotation}, required")
                for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in self.derived}

    def expand(self, spec: PluginSpec) -> dict[str, Any]:
        """``"name"`` or ``{"name": ..., **options}`` -> ``{"name": ..., **every option}``: the factory's
        arguments (less `derived`) with their defaults where the spec leaves them out, each checked
        against its annotation; JSON values. Idempotent. An unknown name or option, a value of the
        wrong type, a derived argument or a required one left out: one-line `VMASError`."""
        if isinstance(spec, str):
            name, options = spec, {}
        elif isinstance(spec, Mapping):
            options = dict(spec)
            if "name" not in options:
                raise VMASError(f"{self.kind} spec {options} has no 'name'; known: {', '.join(self.names())}")
            name = options.pop("name")
        else:
            raise VMASError(f"{self.kind} spec must be a plugin name or {{name: ..., options}}, got {spec!r}")
        factory = self.get(name)
        what = f"{self.kind} '{name}'"
        derived = sorted(set(options) & set(self.derived))
        if derived:
            raise VMASError(f"{what}: {', '.join(derived)} is derived from the other settings "
                            f"(model.sequence, the codec, the encoder); leave it out of the spec")
        params = inspect.signature(factory).parameters
        accepted = [n for n, p in params.items()
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in self.derived]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise VMASError(f"{what} has no option {', '.join(map(repr, unknown))}; accepted: {', '.join(accepted) or 'none'}")
        parser = ArgumentParser(exit_on_error=False, default_env=False)
        parser.add_function_arguments(factory, skip=set(self.derived), as_group=False)
        try:
            parsed = parser.parse_object(copy.deepcopy(options))  # parsing converts nested values in place
        except ArgumentError as exc:  # jsonargparse's message, on one line, naming the plugin
            raise VMASError(f"{what}: {' '.join(str(exc).split())}") from None
        return {"name": name, **json.loads(parser.dump(parsed, format="json", skip_none=False))}

    def build(self, spec: PluginSpec, **derived: Any) -> Any:
        """The plugin of ``spec`` (see `expand`), given the ``derived`` arguments vmas computes from
        the other settings (e.g. an encoder's ``num_frames`` from ``model.sequence``)."""
        undeclared = sorted(set(derived) - set(self.derived))
        if undeclared:
            raise ValueError(f"{self.kind}: {', '.join(undeclared)} passed as derived but not declared so")
        options = self.expand(spec)
        name = options.pop("name")
        plugin = self.get(name)(**options, **derived)
        if self.contract is not None and (missing := missing_members(plugin, self.contract)):
            raise VMASError(f"{self.kind} '{name}' built a {type(plugin).__name__} without {', '.join(missing)} "
                            f"(what contracts.{self.contract.__name__} must have)")
        return plugin


def spec_type(registry: Registry, type_name: str) -> Any:
    """The config type of ``registry``'s specs. jsonargparse parses a name or a whole spec with
    `registry.expand`, so `--print_config` and saved configs show every option. The plain-dict arm
    takes what `expand` cannot see whole, a command-line override of one option (`--model.codec.seed
    1`, which jsonargparse merges into the expanded spec), and a spec `expand` refuses, kept as given:
    `Registry.build` (or `VMASModule` for the evaluation plugins) refuses it in one line before
    anything is trained."""
    spec = type(type_name, (), {"__doc__": f"A {registry.kind} plugin: name or {{name: ..., options}}; "
                                           f"`vmas plugins --options` lists them. {registry.description}.",
                                "__module__": __name__})
    register_type(spec, serializer=lambda value: value, deserializer=registry.expand)
    return Union[spec, dict[str, Any]]


VIDEO_ENCODERS = Registry("video_encoder", "video frames [B, 3, F, H, W] -> features [B, S, D]",
                          derived=("num_frames", "frame_size"), contract=contracts.VideoEncoder)
MUSIC_DECODERS = Registry("music_decoder", "autoregressive token decoder cross-attending to video",
                          derived=("num_codebooks", "codebook_size", "cond_dim", "tokens_per_cond_step"),
                          contract=contracts.MusicDecoder)
TEXT_CONDITIONERS = Registry("text_conditioner", "captions -> text features [B, L, D] and their mask [B, L]",
                             contract=contracts.TextConditioner)
AUDIO_CODECS = Registry("audio_codec", "waveform <-> discrete tokens [B, K, T]", contract=contracts.AudioCodec)
ONSET_DETECTORS = Registry("onset_detector", "music beats: waveform -> onset times", contract=contracts.Function)
OPTICAL_FLOWS = Registry("optical_flow", "video beats: frames -> mean flow magnitude per frame pair", contract=contracts.Function)
AUDIO_EMBEDDERS = Registry("audio_embedder", "FAD embeddings: waveform -> [N, D]", contract=contracts.AudioEmbedder)
AUDIO_CLASSIFIERS = Registry("audio_classifier", "KL: waveform -> AudioSet label probabilities [527]",
                             contract=contracts.AudioClassifier)
FRAME_EMBEDDERS = Registry("frame_embedder", "curation: frames -> embeddings for visual variety", contract=contracts.Function)
SOURCE_SEPARATORS = Registry("source_separator", "curation: vocal removal", contract=contracts.Function)

REGISTRIES: dict[str, Registry] = {
    r.kind: r
    for r in (
        VIDEO_ENCODERS,
        MUSIC_DECODERS,
        TEXT_CONDITIONERS,
        AUDIO_CODECS,
        ONSET_DETECTORS,
        OPTICAL_FLOWS,
        AUDIO_EMBEDDERS,
        AUDIO_CLASSIFIERS,
        FRAME_EMBEDDERS,
        SOURCE_SEPARATORS,
    )
}

VideoEncoderSpec = spec_type(VIDEO_ENCODERS, "VideoEncoderSpec")
MusicDecoderSpec = spec_type(MUSIC_DECODERS, "MusicDecoderSpec")
TextConditionerSpec = spec_type(TEXT_CONDITIONERS, "TextConditionerSpec")
AudioCodecSpec = spec_type(AUDIO_CODECS, "AudioCodecSpec")
OnsetDetectorSpec = spec_type(ONSET_DETECTORS, "OnsetDetectorSpec")
OpticalFlowSpec = spec_type(OPTICAL_FLOWS, "OpticalFlowSpec")
AudioEmbedderSpec = spec_type(AUDIO_EMBEDDERS, "AudioEmbedderSpec")
AudioClassifierSpec = spec_type(AUDIO_CLASSIFIERS, "AudioClassifierSpec")
FrameEmbedderSpec = spec_type(FRAME_EMBEDDERS, "FrameEmbedderSpec")
SourceSeparatorSpec = spec_type(SOURCE_SEPARATORS, "SourceSeparatorSpec")

_loaded = False


def load_plugins() -> None:
    """Import every entry point of ``vmas_lightning.plugins`` (the built-ins' included) once."""
    global _loaded
    if _loaded:
        return
    found = list(entry_points(group=ENTRY_POINT_GROUP))
    if not any(ep.value.startswith("vmas_lightning.") for ep in found):
        raise VMASError("vmas_lightning's built-in plugins are not registered: the package is not installed "
                        "(run `pip install -e .` in the checkout, or `make install`)")
    _loaded = True
    for ep in found:
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the CLI
            raise VMASError(f"plugin entry point '{ep.name} = {ep.value}' failed to load: {exc}") from exc
        if callable(loaded) and not inspect.isclass(loaded) and not inspect.ismodule(loaded):
            loaded()
