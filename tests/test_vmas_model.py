"""VMASModel: plugin wiring, per-sample condition dropout, logits aligned with the un-delayed tokens."""
import pytest
import torch

from vmas_lightning.errors import VMASError
from vmas_lightning.models.vmas import VMASModel, unit_video
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
    assert model.frames_per_feature == model.encoder.frames_per_feature == 2
    assert model.num_features == 2 and abs(1 / model.feature_rate - 0.25) < 1e-9  # 4 frames at 8 fps
    assert model.decoder.pad_token_id == model.codec.codebook_size == 256
    assert model.decoder.cond_proj.in_features == model.encoder.out_dim
    features = model.encode_video(torch.rand(2, 3, SEQUENCE.num_frames, 64, 64))
    assert features.shape == (2, model.num_features, model.encoder.out_dim)
    tokens = torch.randint(0, 256, (2, 4, SEQUENCE.num_tokens))
    assert model.eval()(features, tokens).shape == (2, 4, SEQUENCE.num_tokens, 256)
    assert model.null_features(3, 5).shape == (3, 5, model.encoder.out_dim)


def test_uint8_frames_give_the_floats_the_loader_used_to_make(model):
    """Frames stay uint8 through the loader; the model sees exactly the float32 frames the loader
    workers made before (`copy_` into float32, then `div_(255.0)`), so its features are unchanged."""
    frames = torch.randint(0, 256, (2, 3, SEQUENCE.num_frames, 64, 64), dtype=torch.uint8)
    before = torch.empty(frames.shape, dtype=torch.float32).copy_(frames).div_(255.0)
    assert unit_video(frames).dtype == torch.float32 and torch.equal(unit_video(frames), before)
    assert unit_video(before) is before
    model.eval()
    assert torch.equal(model.encode_video(frames), model.encode_video(before))


def test_clip_encoder_sets_frames_per_feature():
    seq = SequenceConfig(duration_s=1.0, fps=12.0, frame_size=64)
    model = VMASModel({"name": "clip", "size": "tiny"}, {"name": "musicgen", "size": "tiny"}, CODEC, seq)
    assert model.frames_per_feature == 6 and model.num_features == 2
    with pytest.raises(VMASError, match="activation_checkpointing: ClipFrameEncoder does not support it"):
        VMASModel({"name": "clip", "size": "tiny"}, {"name": "musicgen", "size": "tiny"}, CODEC, seq,
                  activation_checkpointing=True)


@pytest.mark.parametrize("sequence, message", [
    (SequenceConfig(duration_s=0.5, fps=8.0, frame_size=64, num_codebooks=8),
     "model.sequence.num_codebooks is 8 but the codec has 4 (EncodecCodec): set model.sequence to the codec's values"),
    (SequenceConfig(duration_s=0.5, fps=8.0, frame_size=64, sample_rate=24000, token_rate=75.0),
     "model.sequence.sample_rate is 24000 but the codec has 32000; model.sequence.token_rate is 75 but the codec has 50"),
])
def test_sequence_contradicting_the_codec_is_a_one_line_error(sequence, message):
    with pytest.raises(VMASError) as err:
        VMASModel(ENCODER, DECODER, CODEC, sequence)
    assert message in str(err.value) and "\n" not in str(err.value)


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


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    """model.activation_checkpointing recomputes decoder layers and Hiera blocks in backward: the
    loss and every gradient are those of the plain model (dropout and null-condition draws included)."""
    import yaml
    from jsonargparse import ArgumentParser

    from helpers import TINY_CONFIG
    from vmas_lightning.cli.profile_memory import fake_batch
    from vmas_lightning.lit_module import VMASModule
    from vmas_lightning.memory import saved_for_backward

    block = yaml.safe_load(TINY_CONFIG.read_text())["model"]
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(VMASModule, "model", fail_untyped=False)
    results = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        module = parser.instantiate(parser.parse_object({"model": {**block, "activation_checkpointing": checkpointing}})).model
        module.train()
        assert module.model.decoder.lm.is_activation_checkpointing == checkpointing
        assert module.model.encoder.grad_checkpointing == checkpointing
        batch = fake_batch(module.model.sequence, 2)
        batch["video"].random_(0, 256)
        batch["tokens"].random_(0, module.model.codec.codebook_size)
        batch["overlap"].bernoulli_(0.2)
        losses = {}
        saved = saved_for_backward(module, lambda: losses.update(module.compute_losses(batch)), "32-true")
        losses["loss"].backward()
        grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
        results.append((losses["loss"].detach(), grads, saved.activations))
    (plain, plain_grads, plain_saved), (checkpointed, checkpointed_grads, checkpointed_saved) = results
    assert checkpointed_saved < plain_saved / 2  # the layers' and blocks' own activations are not kept
    assert torch.equal(plain, checkpointed) and plain_grads.keys() == checkpointed_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=0, atol=1e-7, msg=name)


@pytest.mark.parametrize("beat_weighting, beat_lambda", [(True, 0.25), (True, 1.0), (False, 0.25)])
def test_ar_loss_weights_each_step_by_overlap_plus_beat_lambda(beat_weighting, beat_lambda):
    """`model.loss.beat_lambda` is lambda of w_t = o_t + lambda; without beat weighting every w_t is 1."""
    from vmas_lightning.config import LossConfig
    from vmas_lightning.lit_module import VMASModule
    from vmas_lightning.losses import weighted_cross_entropy

    torch.manual_seed(0)
    module = VMASModule(sequence=SEQUENCE, encoder=ENCODER, decoder=DECODER, codec=CODEC,
                        loss=LossConfig(alpha=0.0, beat_weighting=beat_weighting, beat_lambda=beat_lambda)).eval()
    overlap = torch.zeros(2, SEQUENCE.num_tokens)
    overlap[:, ::3] = 1.0
    batch = {"video": torch.rand(2, 3, SEQUENCE.num_frames, 64, 64), "overlap": overlap,
             "tokens": torch.randint(0, 256, (2, 4, SEQUENCE.num_tokens))}
    with torch.no_grad():
        logits = module.model(module.model.encode_video(batch["video"]), batch["tokens"])
        weights = overlap + beat_lambda if beat_weighting else torch.ones_like(overlap)
        expected = weighted_cross_entropy(logits, batch["tokens"], weights)
        torch.testing.assert_close(module.compute_losses(batch)["loss_ar"], expected)
    with pytest.raises(VMASError, match="model.loss.beat_lambda must be > 0"):
        LossConfig(beat_lambda=0.0)


def test_cross_entropy_splits_at_the_beat_weighted_steps():
    """`video_reliance`: per clip, `ce_beats` and `ce_off_beats` are the own-video cross-entropy at the
    steps with o_t = 1 and at the others (their step-weighted mean is `ce`); a clip without beats has
    NaN `ce_beats`, which `EvaluationSuite` leaves out of the mean."""
    from vmas_lightning.lit_module import VMASModule
    from vmas_lightning.losses import weighted_cross_entropy
    from vmas_lightning.metrics.suite import EvaluationSuite

    torch.manual_seed(0)
    module = VMASModule(sequence=SEQUENCE, encoder=ENCODER, decoder=DECODER, codec=CODEC).eval()
    overlap = torch.zeros(2, SEQUENCE.num_tokens)
    overlap[0, 5:10] = 1.0  # clip 1 has no beat
    batch = {"video": torch.rand(2, 3, SEQUENCE.num_frames, 64, 64), "overlap": overlap,
             "tokens": torch.randint(0, 256, (2, 4, SEQUENCE.num_tokens))}
    reliance = module.video_reliance(batch)
    assert all(values.shape == (2,) for values in reliance.values())
    with torch.no_grad():
        logits = module.model(module.model.encode_video(batch["video"]), batch["tokens"])
    first = (logits[:1], batch["tokens"][:1])
    torch.testing.assert_close(reliance["ce_beats"][0], weighted_cross_entropy(*first, overlap[:1]))
    torch.testing.assert_close(reliance["ce_off_beats"][0], weighted_cross_entropy(*first, 1 - overlap[:1]))
    torch.testing.assert_close(reliance["ce"][0], (5 * reliance["ce_beats"][0] + 20 * reliance["ce_off_beats"][0]) / 25)
    torch.testing.assert_close(reliance["ce_off_beats"][1], reliance["ce"][1])
    assert torch.isnan(reliance["ce_beats"][1])
    assert not torch.allclose(reliance["ce_beats"][0], reliance["ce_off_beats"][0])

    suite = EvaluationSuite({"name": "encodec", "size": "tiny"}, {"name": "ast", "pretrained": None})
    for key, values in reliance.items():
        suite.cross_entropy[key].update(values)
    assert suite.cross_entropy["ce_beats"].compute() == reliance["ce_beats"][0]
    torch.testing.assert_close(suite.cross_entropy["ce"].compute(), reliance["ce"].mean())
