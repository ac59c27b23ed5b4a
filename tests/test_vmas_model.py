"""VMASModel: plugin wiring, per-sample condition dropout, logits aligned with the un-delayed tokens."""
import pytest
import torch

from vmas_lightning.models.vmas import VMASModel
from vmas_lightning.sequence import SequenceConfig

SEQUENCE = SequenceConfig(duration_s=0.5, fps=8.0, frame_size=64)  # 4 frames, 25 token steps
ENCODER = {"name": "efficient_hiera", "size": "tiny", "q_strides": [[1, 4, 4], [1, 2, 2], [1, 2, 2]]}
DECODER = {"name": "musicgen", "size": "tiny", "dropout": 0.0}
CODEC = {"name": "encodec", "size": "tiny"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return VMASModel(ENCODER, DECODER, CODEC, SEQUENCE, cond_dropout=0.5)


def test_wiring_and_shapes(model):
    assert model.sequence.frames_per_feature == model.encoder.frames_per_feature == 2
    assert model.decoder.pad_token_id == model.codec.codebook_size == 256
    assert model.decoder.cond_proj.in_features == model.encoder.out_dim
    features = model.encode_video(torch.rand(2, 3, SEQUENCE.num_frames, 64, 64))
    assert features.shape == (2, model.sequence.num_features, model.encoder.out_dim)
    tokens = torch.randint(0, 256, (2, 4, SEQUENCE.num_tokens))
    assert model.eval()(features, tokens).shape == (2, 4, SEQUENCE.num_tokens, 256)
    assert model.null_features(3, 5).shape == (3, 5, model.encoder.out_dim)


def test_clip_encoder_sets_frames_per_feature():
    seq = SequenceConfig(duration_s=1.0, fps=12.0, frame_size=64)
    model = VMASModel({"name": "clip", "size": "tiny"}, {"name": "musicgen", "size": "tiny"}, CODEC, seq)
    assert model.sequence.frames_per_feature == 6 and model.sequence.num_features == 2


def test_condition_dropped_per_sample(model):
    batch = 256
    features, tokens = torch.randn(1, 2, model.encoder.out_dim), torch.randint(0, 256, (1, 4, 3))
    features, tokens = features.expand(batch, -1, -1), tokens.expand(batch, -1, -1)
    model.eval()
    with torch.no_grad():
        kept = model(features[:1], tokens[:1], torch.tensor([False]))
        dropped = model(features[:1], tokens[:1], torch.tensor([True]))
        assert torch.allclose(model(features, tokens), kept, atol=1e-5)  # eval: nothing dropped
        torch.manual_seed(1)
        out = model.train()(features, tokens)
    model.eval()
    is_kept = torch.isclose(out, kept, atol=1e-5).flatten(1).all(1)
    is_dropped = torch.isclose(out, dropped, atol=1e-5).flatten(1).all(1)
    assert torch.all(is_kept ^ is_dropped)  # each sample is one or the other
    assert 0.35 < is_dropped.float().mean() < 0.65  # cond_dropout 0.5, +-5 sigma at 256 samples


def test_logits_align_with_tokens_and_are_causal(model):
    model.eval()
    features = torch.randn(1, 2, model.encoder.out_dim)
    tokens = torch.randint(0, 256, (1, 4, 6))
    base = model(features, tokens)
    for k in range(4):
        for t in (0, 3):
            changed = tokens.clone()
            changed[:, k, t:] = (changed[:, k, t:] + 1) % 256  # the target and later steps of codebook k
            logits = model(features, changed)
            # logits[:, k, t] predicts tokens[:, k, t]: it must not see it nor anything later in codebook k
            assert torch.allclose(logits[:, k, : t + 1], base[:, k, : t + 1], atol=1e-6)
            assert not torch.allclose(logits[:, k, t + 1 :], base[:, k, t + 1 :], atol=1e-6)  # but later steps do
            if k < 3:  # delay pattern: the next codebook at the same step sees codebook k's code
                assert not torch.allclose(logits[:, k + 1, t], base[:, k + 1, t], atol=1e-6)


def test_null_condition_in_the_graph_of_every_training_step():
    """DDP needs a gradient for every parameter, also when no sample was dropped."""
    model = VMASModel(ENCODER, DECODER, CODEC, SEQUENCE, cond_dropout=0.0).train()
    features = model.encode_video(torch.rand(2, 3, SEQUENCE.num_frames, 64, 64))
    model(features, torch.randint(0, 256, (2, 4, 5))).sum().backward()
    assert model.null_condition.grad is not None and torch.all(model.null_condition.grad == 0)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
