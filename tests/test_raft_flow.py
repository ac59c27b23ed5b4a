"""The `raft` optical-flow plugin: shapes with random weights on CPU, and its weight loader's one-line errors."""
import numpy as np
import pytest
import torch
from torchvision.models.optical_flow import raft_large, raft_small

from vmas_lightning.beats import BeatConfig, frames_flow
from vmas_lightning.beats.optical_flow import RAFTFlow
from vmas_lightning.errors import MissingWeightsError, VMASError
from vmas_lightning.registry import OPTICAL_FLOWS


def frames(count: int = 4, height: int = 60, width: int = 68) -> np.ndarray:
    """uint8 [F, H, W, 3]: noise (H, W not multiples of 8: RAFT pads and crops back)."""
    return (np.random.default_rng(0).random((count, height, width, 3)) * 255).astype(np.uint8)


def test_random_weights_give_one_magnitude_per_pair_in_batches():
    spec = {"name": "raft", "pretrained": None, "batch_size": 2, "num_flow_updates": 1, "device": "cpu"}
    magnitude = OPTICAL_FLOWS.build(spec)(frames())
    assert magnitude.shape == (3,) and magnitude.dtype == np.float32 and np.all(np.isfinite(magnitude))
    series = frames_flow(frames(), 25.0, BeatConfig(optical_flow={**spec, "batch_size": 3}))
    np.testing.assert_allclose(series.magnitude, magnitude, rtol=1e-4)  # batching does not change a pair's flow
    assert series.times.tolist() == pytest.approx([0.04, 0.08, 0.12])
    assert OPTICAL_FLOWS.build(spec)(frames(1)).shape == (0,)


def test_torchvision_weights_load_from_the_hub_cache_and_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MissingWeightsError) as err:
        RAFTFlow(pretrained="C_T_V2", device="cpu")
    expected = tmp_path / "checkpoints" / "raft_small_C_T_V2-01064c6d.pth"
    message = str(err.value)
    assert "\n" not in message and "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth" in message
    assert f"to {expected}" in message
    expected.parent.mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        network = raft_small()
    torch.save(network.state_dict(), expected)
    loaded = RAFTFlow(pretrained="C_T_V2", device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(loaded.network.state_dict().values(), network.state_dict().values()))
    torch.save(raft_large().state_dict(), tmp_path / "large.pth")
    with pytest.raises(VMASError, match=r"large\.pth: not a torchvision raft_small state dict") as err:
        RAFTFlow(pretrained=str(tmp_path / "large.pth"), device="cpu")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("options, message", [
    ({"size": "medium"}, r"unknown size 'medium'; known: small, large"),
    ({"pretrained": "C_T_SKHT_V2"}, r"no torchvision weights 'C_T_SKHT_V2' for raft_small; known: C_T_V1, C_T_V2"),
    ({"pretrained": "/nowhere/raft.pth"}, r"missing pretrained weights for RAFT \(small\): '/nowhere/raft.pth' not found"),
    ({"batch_size": 0}, r"batch_size must be an integer >= 1, got 0"),
    ({"device": "tpu"}, r"unknown device 'tpu'"),
])
def test_bad_options_are_one_line(options, message):
    with pytest.raises(VMASError, match=message) as err:
        RAFTFlow(**options)
    assert "\n" not in str(err.value)
