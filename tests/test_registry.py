"""Plugin registries: short names, option checking, unknown names, third-party entry points."""
import sys
import textwrap

import pytest

from helpers import install_plugin
from vmas_lightning import registry
from vmas_lightning.errors import VMASError
from vmas_lightning.registry import REGISTRIES, VIDEO_ENCODERS, Registry


def test_build_by_name_and_spec():
    reg = Registry("widget", "test widgets", derived=("scale",))

    @reg.register("square")
    def square(scale: int, side: int = 2):
        return scale * side * side

    assert reg.build("square", scale=1) == 4
    assert reg.build({"name": "square", "side": 3}, scale=1) == 9
    assert reg.build({"name": "square", "side": 3}, scale=2) == 18
    with pytest.raises(ValueError, match="side passed as derived but not declared so"):
        reg.build("square", scale=1, side=5)


def test_expand_fills_every_option_checks_types_and_is_idempotent():
    expanded = VIDEO_ENCODERS.expand({"name": "efficient_hiera", "size": "tiny", "q_strides": [[1, 4, 4], [1, 2, 2]]})
    assert expanded == {"name": "efficient_hiera", "size": "tiny", "pretrained": None, "freeze": False,
                        "q_strides": [[1, 4, 4], [1, 2, 2]], "mask_units": None}
    assert VIDEO_ENCODERS.expand(expanded) == expanded  # what a saved config holds parses to itself
    assert VIDEO_ENCODERS.expand("hiera") == {**expanded, "name": "hiera", "size": "base", "q_strides": None}
    with pytest.raises(VMASError) as err:
        VIDEO_ENCODERS.expand({"name": "clip", "size": 3})
    assert str(err.value).startswith("video_encoder 'clip': Parser key \"size\": Expected a <class 'str'>")
    assert "\n" not in str(err.value)


def test_a_derived_option_in_a_spec_is_rejected_not_overridden():
    with pytest.raises(VMASError) as err:
        VIDEO_ENCODERS.build({"name": "clip", "size": "tiny", "num_frames": 16}, num_frames=96, frame_size=64)
    assert str(err.value) == ("video_encoder 'clip': num_frames is derived from the other settings "
                              "(model.sequence, the codec, the encoder); leave it out of the spec")


def test_an_option_called_name_is_refused_at_registration():
    reg = Registry("widget", "test widgets")
    with pytest.raises(ValueError, match="'name' would clash"):
        reg.register("bad", lambda name="x": name)


def test_builtin_plugins_come_from_the_installed_entry_points(monkeypatch):
    """vmas registers its own plugins through the entry-point group third parties use; without the
    installed metadata (a checkout on PYTHONPATH only) it says how to install."""
    from importlib.metadata import entry_points

    values = {ep.value for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {"vmas_lightning.models.encoders", "vmas_lightning.models.decoders", "vmas_lightning.models.codecs"} <= values
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [])
    with pytest.raises(VMASError, match=r"not installed \(run `pip install -e \.`"):
        registry.load_plugins()


def test_unknown_name_lists_known_ones():
    with pytest.raises(VMASError) as err:
        VIDEO_ENCODERS.get("resnet")
    message = str(err.value)
    assert "unknown video_encoder 'resnet'" in message
    for name in ("clip", "hiera", "efficient_hiera"):
        assert name in message
    assert "\n" not in message


def test_wrong_option_names_the_option_and_the_accepted_ones():
    reg = Registry("widget", "test widgets")

    @reg.register("square")
    def square(side: int = 2):
        return side * side

    with pytest.raises(VMASError, match=r"widget 'square' has no option 'sid'; accepted: side"):
        reg.build({"name": "square", "sid": 3})
    with pytest.raises(VMASError, match="has no 'name'"):
        reg.build({"side": 3})


def test_every_kind_has_builtin_plugins():
    names = {kind: reg.names() for kind, reg in REGISTRIES.items()}
    assert {"clip", "hiera", "efficient_hiera"} <= set(names["video_encoder"])
    assert "musicgen" in names["music_decoder"]
    assert "encodec" in names["audio_codec"]
    assert "librosa" in names["onset_detector"]
    assert {"farneback", "dis"} <= set(names["optical_flow"])
    assert all(names.values()), names


def test_third_party_entry_point_registers_a_plugin(tmp_path, monkeypatch):
    """A package installed with an entry point in `vmas_lightning.plugins` adds a plugin."""
    source = textwrap.dedent("""
        from vmas_lightning.registry import OPTICAL_FLOWS

        @OPTICAL_FLOWS.register("zero_flow")
        def zero_flow():
            return lambda frames: [0.0] * (len(frames) - 1)
    """)
    install_plugin(tmp_path, "my_vmas_plugin", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        assert "zero_flow" in registry.OPTICAL_FLOWS.names()
        assert registry.OPTICAL_FLOWS.build("zero_flow")([1, 2, 3]) == [0.0, 0.0]
    finally:
        registry.OPTICAL_FLOWS._factories.pop("zero_flow", None)
        sys.modules.pop("my_vmas_plugin", None)


def test_user_errors_survive_pickling_across_processes():
    import pickle

    from vmas_lightning.errors import InputFileError, MissingWeightsError

    for err in (InputFileError("a.mp4", "empty file"), MissingWeightsError("codec", "facebook/x", "download it")):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err) and str(copy) == str(err)


def test_a_plugin_that_breaks_its_kinds_contract_fails_when_built():
    """`contracts.VideoEncoder` asks for `out_dim` and `frames_per_feature`: a factory returning a bare
    module is refused in one line naming what is missing, before anything trains."""
    import torch

    from vmas_lightning import contracts

    encoders = Registry("video_encoder", "test", derived=("num_frames",), contract=contracts.VideoEncoder)

    @encoders.register("bare")
    def bare(num_frames: int, width: int = 4):
        return torch.nn.Linear(width, width)

    @encoders.register("whole")
    def whole(num_frames: int, width: int = 4):
        module = torch.nn.Linear(width, width)
        module.out_dim, module.frames_per_feature = width, 2
        return module

    with pytest.raises(VMASError, match=r"video_encoder 'bare' built a Linear without frames_per_feature, out_dim "
                                        r"\(what contracts.VideoEncoder must have\)"):
        encoders.build("bare", num_frames=8)
    assert encoders.build({"name": "whole", "width": 3}, num_frames=8).out_dim == 3
    onsets = Registry("onset_detector", "test", contract=contracts.Function)
    onsets.register("not_callable", lambda: 42)
    with pytest.raises(VMASError, match=r"onset_detector 'not_callable' built a int without __call__"):
        onsets.build("not_callable")
