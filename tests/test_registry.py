"""Plugin registries: short names, option checking, unknown names, third-party entry points."""
import sys
import textwrap

import pytest

from conftest import install_plugin
from vmas_lightning import registry
from vmas_lightning.errors import VMASError
from vmas_lightning.registry import REGISTRIES, VIDEO_ENCODERS, Registry


def test_build_by_name_and_spec():
    reg = Registry("widget", "test widgets")
    reg.register("square", lambda side=2: side * side)
    assert reg.build("square") == 4
    assert reg.build({"name": "square", "side": 3}) == 9
    assert reg.build({"name": "square"}, side=5) == 25
    assert reg.build({"name": "square", "side": 5}, side=5) == 25  # the same value: no conflict


def test_spec_option_contradicting_a_derived_value_is_rejected_not_overridden():
    with pytest.raises(VMASError) as err:
        VIDEO_ENCODERS.build({"name": "clip", "size": "tiny", "num_frames": 16}, num_frames=96, frame_size=64)
    message = str(err.value)
    assert message == ("video_encoder 'clip': num_frames: 16 contradicts the value vmas derives from the other "
                       "settings (num_frames=96, frame_size=64); leave it out of the spec")


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
            return "zero"
    """)
    install_plugin(tmp_path, "my_vmas_plugin", source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", False)
    try:
        assert "zero_flow" in registry.OPTICAL_FLOWS.names()
        assert registry.OPTICAL_FLOWS.build("zero_flow") == "zero"
    finally:
        registry.OPTICAL_FLOWS._factories.pop("zero_flow", None)
        sys.modules.pop("my_vmas_plugin", None)


def test_user_errors_survive_pickling_across_processes():
    import pickle

    from vmas_lightning.errors import InputFileError, MissingWeightsError

    for err in (InputFileError("a.mp4", "empty file"), MissingWeightsError("codec", "facebook/x", "download it")):
        copy = pickle.loads(pickle.dumps(err))
        assert type(copy) is type(err) and str(copy) == str(err)
