"""Curation plugins: frame similarity, the frame embedders and Demucs vocal removal with small saved weights."""
import json

import numpy as np
import pytest
import torch

from media import gradient_frames
from vmas_lightning.data import separators
from vmas_lightning.data.frame_embedders import frame_similarity
from vmas_lightning.errors import MissingWeightsError
from vmas_lightning.registry import FRAME_EMBEDDERS, SOURCE_SEPARATORS


def test_frame_similarity_known_values():
    assert frame_similarity(np.array([[1.0, 0.0], [0.0, 2.0]])) == pytest.approx(0.0)
    assert frame_similarity(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])) == pytest.approx(1.0)
    assert frame_similarity(np.array([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-1.0)


def test_pixel_stats_tells_a_static_video_from_a_varied_one():
    embed = FRAME_EMBEDDERS.build("pixel_stats")
    static = gradient_frames(16, 64, 64)  # one picture whose brightness drifts a little
    varied = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)  # a cut every frame
    assert embed(static).shape == (16, 16 * 16 * 3)
    assert frame_similarity(embed(static)) > 0.9
    assert frame_similarity(embed(varied)) < 0.1


def test_clip_embedder_loads_saved_weights(tmp_path):
    import timm

    vit = timm.create_model("vit_base_patch32_clip_224.openai", num_classes=0, img_size=224, embed_dim=32, depth=2,
                            num_heads=2).eval()
    torch.save(vit.state_dict(), tmp_path / "clip_tiny.pth")
    embed = FRAME_EMBEDDERS.build({"name": "clip", "size": "tiny", "pretrained": str(tmp_path / "clip_tiny.pth")})
    frames = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    mean, std = (torch.tensor(vit.pretrained_cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    with torch.no_grad():
        expected = vit((torch.from_numpy(frames).permute(0, 3, 1, 2) / 255.0 - mean) / std).numpy()
    np.testing.assert_allclose(embed(frames), expected, rtol=1e-4, atol=1e-5)  # the saved weights, not random ones
    with pytest.raises(MissingWeightsError):
        FRAME_EMBEDDERS.build({"name": "clip", "size": "tiny", "pretrained": str(tmp_path / "missing.pth")})


def save_tiny_demucs(folder, name="htdemucs"):
    """A randomly initialised HTDemucs in the hub layout demucs 4.1 downloads: `<name>.yaml` + safetensors."""
    from demucs.htdemucs import HTDemucs
    from safetensors.torch import save_file

    torch.manual_seed(0)
    kwargs = dict(sources=["drums", "bass", "other", "vocals"], channels=8, dconv_comp=2, depth=2, t_layers=1,
                  t_heads=1, nfft=512, segment=1)
    model = HTDemucs(**kwargs)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, folder / "tiny0.safetensors",
              metadata={"klass": "demucs.htdemucs.HTDemucs", "args": "[]", "kwargs": json.dumps(kwargs)})
    (folder / f"{name}.yaml").write_text("models: ['tiny0']\n")
    return state


def test_htdemucs_from_a_local_folder_and_from_the_hub_cache(tmp_path, monkeypatch):
    state = save_tiny_demucs(tmp_path / "local")
    model = separators.load_demucs("htdemucs", str(tmp_path / "local"))
    loaded = model.models[0].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    separate = SOURCE_SEPARATORS.build({"name": "htdemucs", "repo": str(tmp_path / "local")})
    wav = np.sin(np.arange(16000) * 0.05).astype(np.float32)
    out = separate(wav, 16000)
    assert out.shape == wav.shape and out.dtype == np.float32 and np.isfinite(out).all()

    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo_dir = cache / "models--adefossez--HTDemucs"
    save_tiny_demucs(repo_dir / "snapshots" / "abc123")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    cached = separators.load_demucs("htdemucs")
    assert all(torch.equal(cached.models[0].state_dict()[k], v) for k, v in state.items())


def test_htdemucs_without_weights_is_a_one_line_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(separators, "hub_reachable", lambda: False)  # as on an offline machine
    with pytest.raises(MissingWeightsError, match="adefossez/HTDemucs") as err:
        SOURCE_SEPARATORS.build("htdemucs")
    assert "\n" not in str(err.value) and "--separator none" in str(err.value)
    assert "hf download adefossez/HTDemucs --local-dir DIR" in str(err.value)  # the pinned huggingface_hub's CLI
    with pytest.raises(MissingWeightsError, match="no such folder"):
        SOURCE_SEPARATORS.build({"name": "htdemucs", "repo": str(tmp_path / "nowhere")})


def test_no_separation_keeps_the_soundtrack():
    wav = np.linspace(-1, 1, 100, dtype=np.float32)
    np.testing.assert_array_equal(SOURCE_SEPARATORS.build("none")(wav, 32000), wav)
