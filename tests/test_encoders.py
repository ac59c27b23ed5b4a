"""Video encoders: output shapes, per-stage Q-pooling and mask units that are real spatial regions,
official-checkpoint loading with resized positional embeddings, CLIP per-frame features."""
import copy

import pytest
import torch
import torch.nn.functional as F
from timm.models.hiera import Unroll

from vmas_lightning.errors import MissingWeightsError, VMASError
from vmas_lightning.models.encoders import clip, efficient_hiera, hiera
from vmas_lightning.models.encoders.hiera import HIERA_B_16X224_URL, HIERA_MASK_UNITS, HIERA_Q_STRIDES, HieraVideoEncoder


@pytest.fixture(scope="module")
def tiny_efficient():
    torch.manual_seed(0)
    return efficient_hiera(size="tiny", num_frames=4, frame_size=224).eval()


def test_tiny_shapes():
    video = torch.rand(2, 3, 8, 64, 64)
    small = efficient_hiera(size="tiny", num_frames=8, frame_size=64, q_strides=[[1, 4, 4], [1, 2, 2], [1, 2, 2]])
    std = hiera(size="tiny", num_frames=8, frame_size=64)
    for encoder in (small, std):
        assert encoder(video).shape == (2, 4, encoder.out_dim) and encoder.frames_per_feature == 2


def test_full_size_output_shapes_on_meta():
    with torch.device("meta"):
        video = torch.empty(1, 3, 96, 224, 224)
        efficient, standard = efficient_hiera(), hiera()
        assert efficient(video).shape == (1, 48, 768)
        assert standard(video).shape == (1, 48, 768)
    assert standard.output_grid == (48, 7, 7) and efficient.output_grid == (48, 1, 1)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(efficient) == count(standard)  # strides change no parameter: Hiera-B weights load into both


def test_full_size_efficient_hiera_runs_on_cpu():
    """The paper's encoder at its real input, real tensors (about 5 s on one CPU thread)."""
    with torch.no_grad():
        features = efficient_hiera().eval()(torch.rand(1, 3, 96, 224, 224))
    assert features.shape == (1, 48, 768) and torch.isfinite(features).all()


def test_q_pooling_is_spatial_max_pool_with_each_stage_stride(tiny_efficient):
    m = tiny_efficient
    x = torch.randn(1, *m.tokens_spatial_shape, 5)  # [1, 2, 56, 56, C] in spatial order
    unrolled = m.unroll(x.flatten(1, 3))
    stage1 = unrolled.view(1, 16, -1, 5).amax(1)  # what HieraBlock / MaskUnitAttention do with q_stride 16
    stage2 = stage1.view(1, 49, -1, 5).amax(1)
    pool = lambda k: F.max_pool3d(x.permute(0, 4, 1, 2, 3), k).permute(0, 2, 3, 4, 1)  # noqa: E731
    assert torch.equal(m.reroll(stage1, m.stage_ends[0] + 1), pool((1, 4, 4)))
    assert torch.equal(m.reroll(stage2, m.stage_ends[1] + 1), pool((1, 28, 28)))


def _changed(block, to_tokens, from_tokens, x, where):
    """Spatial positions of `block`'s output that change when input token `where` changes."""
    y = x.clone()
    y[(0, *where)] += torch.linspace(-1.0, 1.0, x.shape[-1], dtype=x.dtype)  # not a constant: LayerNorm removes those
    with torch.no_grad():
        diff = from_tokens(block(to_tokens(y.flatten(1, 3))) - block(to_tokens(x.flatten(1, 3))))
    return set(map(tuple, (diff.abs().amax(-1)[0] > 0).nonzero().tolist()))


def test_mask_unit_attention_stays_in_its_region(tiny_efficient):
    m = copy.deepcopy(tiny_efficient).double()  # float64: no change lost to rounding
    x0 = torch.randn(1, 2, 56, 56, 16, dtype=torch.float64)
    # stage 0: 4x4 mask units
    touched = _changed(m.blocks[0], m.unroll, lambda t: m.reroll(t, 0), x0, (1, 13, 22))
    assert touched == {(1, y, x) for y in range(12, 16) for x in range(20, 24)}
    # pooling into stage 1: each pooled query sees only its own 4x4 region
    assert _changed(m.blocks[1], m.unroll, lambda t: m.reroll(t, 1), x0, (1, 13, 22)) == {(1, 3, 5)}
    # pooling into stage 2: 7x7 stage-1 tokens per pooled query
    x1 = torch.randn(1, 2, 14, 14, 32, dtype=torch.float64)
    unroll1 = Unroll((2, 14, 14), (1, 1, 1), m.q_stride[1:])
    assert _changed(m.blocks[2], unroll1, lambda t: m.reroll(t, 2), x1, (0, 9, 3)) == {(0, 1, 0)}


def test_mask_unit_must_be_a_pooling_region():
    with pytest.raises(VMASError, match="mask unit"):
        efficient_hiera(size="tiny", num_frames=4, frame_size=224, mask_units=[[1, 8, 8], [1, 8, 8]])
    with pytest.raises(VMASError, match="q_strides"):
        efficient_hiera(size="tiny", num_frames=4, frame_size=64)  # (1, 7, 7) needs a 224 frame


def _save_official(model, path, temporal=None):
    """A state dict in the official hiera repo's format (`model_state`, `norm.*`, `head.projection.*`)."""
    state = {k.replace("head.norm.", "norm."): v.clone() for k, v in model.state_dict().items()}
    if temporal is not None:
        state["pos_embed_temporal"] = temporal
    state["head.projection.weight"] = torch.randn(400, model.out_dim)
    state["head.projection.bias"] = torch.zeros(400)
    torch.save({"model_state": state}, path)


def test_official_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    source = hiera(size="tiny", num_frames=16, frame_size=64).eval()
    _save_official(source, tmp_path / "hiera.pth")
    loaded = hiera(size="tiny", num_frames=16, frame_size=64, pretrained=str(tmp_path / "hiera.pth")).eval()
    video = torch.rand(1, 3, 16, 64, 64)
    assert torch.equal(loaded(video), source(video))


def test_positional_embeddings_resized_to_more_frames_and_pixels(tmp_path):
    source = hiera(size="tiny", num_frames=16, frame_size=64)
    ramp = torch.arange(8.0).view(1, 8, 1).expand(1, 8, source.pos_embed_temporal.shape[-1])  # 16 frames -> 8 steps
    _save_official(source, tmp_path / "hiera.pth", temporal=ramp)
    target = efficient_hiera(size="tiny", num_frames=32, frame_size=128, pretrained=str(tmp_path / "hiera.pth"),
                             q_strides=[[1, 4, 4], [1, 4, 4], [1, 2, 2]])
    expected = (torch.arange(16.0) / 2 - 0.25).clamp(0, 7)  # linear, half-pixel centres
    assert torch.allclose(target.pos_embed_temporal[0, :, 0], expected)
    assert target.pos_embed_spatial.shape == (1, 32 * 32, source.pos_embed_temporal.shape[-1])


def test_hiera_missing_checkpoint(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"Hiera video encoder \(model.encoder.pretrained\).*hiera_base_16x224.pth") as info:
        efficient_hiera(size="tiny", num_frames=4, frame_size=224, pretrained=str(tmp_path / "hiera_base_16x224.pth"))
    assert "\n" not in str(info.value)


def test_freeze():
    encoder = hiera(size="tiny", num_frames=8, frame_size=64, freeze=True)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_clip_features_of_every_sixth_frame():
    encoder = clip(size="tiny", num_frames=12, frame_size=64).eval()
    video = torch.rand(2, 3, 12, 64, 64)
    out = encoder(video)
    assert out.shape == (2, 2, 32) and encoder.frames_per_feature == 6
    frame = (video[1, :, 6][None] - encoder.mean) / encoder.std
    assert torch.allclose(out[1, 1], encoder.vit(frame)[0], atol=1e-6)


def test_clip_local_file_round_trip(tmp_path):
    source = clip(size="tiny", num_frames=12, frame_size=64).eval()
    torch.save(source.vit.state_dict(), tmp_path / "clip.pth")
    loaded = clip(size="tiny", num_frames=12, frame_size=64, pretrained=str(tmp_path / "clip.pth")).eval()
    video = torch.rand(1, 3, 12, 64, 64)
    assert torch.equal(loaded(video), source(video))
    with pytest.raises(MissingWeightsError, match="CLIP"):
        clip(size="tiny", num_frames=12, frame_size=64, pretrained=str(tmp_path / "missing.pth"))


def test_hiera_unreadable_checkpoint(tmp_path):
    (tmp_path / "hiera.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(VMASError, match="not a readable PyTorch checkpoint"):
        hiera(size="tiny", num_frames=8, frame_size=64, pretrained=str(tmp_path / "hiera.pth"))


def test_hiera_checkpoint_of_another_size_or_an_image_hiera_is_one_line(tmp_path):
    """Hiera-B+ (wider) gave a 372-line size-mismatch traceback, the image Hiera a KeyError."""
    from timm.models.hiera import Hiera

    wider = HieraVideoEncoder(16, 64, embed_dim=24, num_heads=2, stages=(1, 1, 1, 1), q_strides=HIERA_Q_STRIDES,
                              mask_units=HIERA_MASK_UNITS)  # tiny's layout, B+'s extra width
    _save_official(wider, tmp_path / "hiera_plus.pth")
    image = Hiera(img_size=(64, 64), embed_dim=16, num_heads=1, stages=(1, 1, 1, 1), num_classes=400)
    torch.save({"model_state": image.state_dict()}, tmp_path / "hiera_image.pth")
    for name, expected in (("hiera_plus.pth", "of another shape (e.g. blocks.0.attn.proj.bias [24], expected [16])"),
                           ("hiera_image.pth", "missing (e.g. pos_embed_spatial)")):
        with pytest.raises(VMASError, match="not a Hiera video checkpoint") as info:
            hiera(size="tiny", num_frames=16, frame_size=64, pretrained=str(tmp_path / name))
        message = str(info.value)
        assert expected in message and "\n" not in message and HIERA_B_16X224_URL in message
