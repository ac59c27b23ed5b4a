"""MusicGen decoder: shapes, cross-attention to the video in every layer, KV cache, loading."""
import pytest
import torch
from transformers import (
    EncodecConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    T5Config,
)

from media import truncated_copy
from vmas_lightning.errors import InputFileError, MissingWeightsError, VMASError
from vmas_lightning.models.decoders.musicgen import musicgen, sinusoids

K, V, D = 4, 32, 24


@pytest.fixture(scope="module")
def decoder():
    torch.manual_seed(0)
    return musicgen(K, V, D, size="tiny").eval()


def test_shapes_and_attributes(decoder):
    ids = torch.randint(0, V + 1, (2, K, 7))
    logits, past = decoder(ids, torch.randn(2, 5, D))
    assert logits.shape == (2, K, 7, V) and past is None
    assert (decoder.width, decoder.num_layers, decoder.pad_token_id) == (64, 2, V)


def test_every_layer_cross_attends_to_projected_video(decoder):
    seen = []
    hooks = [layer.encoder_attn.register_forward_hook(lambda m, a, kw, out: seen.append(kw["key_value_states"]),
                                                      with_kwargs=True) for layer in decoder.lm.model.decoder.layers]
    cond = torch.randn(1, 5, D)
    decoder(torch.randint(0, V, (1, K, 3)), cond)
    for hook in hooks:
        hook.remove()
    assert len(seen) == decoder.num_layers
    for states in seen:
        assert torch.equal(states, decoder.cond_proj(cond))


def test_time_embedding_is_the_decoders_position_code_at_each_features_time():
    from transformers.models.musicgen.modeling_musicgen import MusicgenSinusoidalPositionalEmbedding

    table = MusicgenSinusoidalPositionalEmbedding(40, 64).weights
    torch.testing.assert_close(sinusoids(torch.arange(40.0), 64), table)  # the same code at integer positions
    torch.manual_seed(0)
    timed = musicgen(K, V, D, tokens_per_cond_step=10.0, size="tiny", time_embedding=True).eval()
    cond = torch.randn(1, 3, D)
    # feature s is centred on token step (s + 0.5) * 10 - 0.5: 4.5, 14.5, 24.5
    expected = timed.cond_proj(cond) + sinusoids(torch.tensor([4.5, 14.5, 24.5]), 64)
    torch.testing.assert_close(timed.project_condition(cond), expected)
    # one step apart in time, one position step apart in code: the code of step 14.5 lies between 14 and 15
    code = sinusoids(torch.tensor([14.5]), 64)[0]
    assert (code - table[14]).norm() < (code - table[20]).norm() and (code - table[15]).norm() < (code - table[9]).norm()


def aligned_input(aligned, ids, cond, upsample=1):
    """What the aligned condition adds to the first decoder layer's input `[B, T, D]`, and the aligned
    projection of each feature's sub-steps `[B, S * upsample, D]` (run once as is, once with it zeroed)."""
    seen = []
    hook = aligned.lm.model.decoder.layers[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    aligned(ids, cond)
    with torch.no_grad():
        own = aligned.aligned_proj(cond).view(cond.shape[0], cond.shape[1], upsample, -1).flatten(1, 2)
        aligned.aligned_proj.weight.zero_(), aligned.aligned_proj.bias.zero_()
    aligned(ids, cond)
    hook.remove()
    return seen[0] - seen[1], own


def test_aligned_condition_adds_each_steps_own_time_feature_to_its_input():
    torch.manual_seed(0)
    aligned = musicgen(K, V, D, tokens_per_cond_step=2.5, size="tiny", aligned_condition=True).eval()
    ids, cond = torch.randint(0, V + 1, (2, K, 9)), torch.randn(2, 4, D)
    added, own = aligned_input(aligned, ids, cond)
    # step j gets feature floor(j / 2.5): 0 0 0 1 1 2 2 2 3
    torch.testing.assert_close(added, own[:, [0, 0, 0, 1, 1, 2, 2, 2, 3]])
    assert aligned._aligned is None  # nothing kept between calls


def test_aligned_upsample_gives_each_step_its_own_sub_step_feature():
    torch.manual_seed(0)
    aligned = musicgen(K, V, D, tokens_per_cond_step=2.5, size="tiny", aligned_condition=True, aligned_upsample=2).eval()
    ids, cond = torch.randint(0, V + 1, (2, K, 9)), torch.randn(2, 4, D)
    added, own = aligned_input(aligned, ids, cond, upsample=2)
    # sub-steps of 1.25 token steps: step j gets floor(j / 1.25): 0 0 1 2 3 4 4 5 6
    torch.testing.assert_close(added, own[:, [0, 0, 1, 2, 3, 4, 4, 5, 6]])
    assert not torch.allclose(own[:, 0], own[:, 1])  # the two halves of one feature differ


def test_aligned_linear_interpolation_mixes_the_two_sub_steps_around_each_step():
    torch.manual_seed(0)
    aligned = musicgen(K, V, D, tokens_per_cond_step=2.5, size="tiny", aligned_condition=True, aligned_upsample=2,
                       aligned_interpolation="linear").eval()
    ids, cond = torch.randint(0, V + 1, (2, K, 9)), torch.randn(2, 4, D)
    added, own = aligned_input(aligned, ids, cond, upsample=2)
    # sub-steps of 1.25 token steps: step j sits at j / 1.25 = 0, 0.8, 1.6, 2.4, 3.2, 4, 4.8, 5.6, 6.4
    at = torch.tensor([0, 0.8, 1.6, 2.4, 3.2, 4, 4.8, 5.6, 6.4])
    low, fraction = at.floor().long(), (at - at.floor())[:, None]
    expected = (1 - fraction) * own[:, low] + fraction * own[:, low + 1]
    torch.testing.assert_close(added, expected)
    torch.testing.assert_close(added[:, 5], own[:, 4])  # on a sub-step's own time: that feature alone


def test_aligned_linear_interpolation_holds_the_last_sub_step_at_the_end():
    aligned = musicgen(K, V, D, tokens_per_cond_step=2.0, size="tiny", aligned_condition=True,
                       aligned_interpolation="linear").eval()
    ids, cond = torch.randint(0, V + 1, (1, K, 12)), torch.randn(1, 3, D)  # steps 10, 11 lie past the last feature
    added, own = aligned_input(aligned, ids, cond)
    torch.testing.assert_close(added[:, 4], own[:, 2])  # step 4 = feature 2, the last
    torch.testing.assert_close(added[:, 5:], own[:, 2:3].expand(-1, 7, -1))
    torch.testing.assert_close(added[:, 3], (own[:, 1] + own[:, 2]) / 2)


@pytest.mark.parametrize("options, message", [
    (dict(aligned_upsample=2), "aligned_upsample 2 needs aligned_condition"),
    (dict(aligned_interpolation="linear"), "aligned_interpolation 'linear' needs aligned_condition"),
    (dict(aligned_condition=True, aligned_interpolation="cubic"), "must be one of hold, linear"),
])
def test_aligned_options_without_aligned_condition_or_unknown_are_rejected(options, message):
    with pytest.raises(VMASError, match=message):
        musicgen(K, V, D, size="tiny", **options)


@pytest.mark.parametrize("aligned_condition, aligned_upsample, aligned_interpolation",
                         [(False, 1, "hold"), (True, 1, "hold"), (True, 2, "hold"), (True, 2, "linear")])
def test_kv_cache_gives_full_forward_logits(aligned_condition, aligned_upsample, aligned_interpolation):
    torch.manual_seed(0)
    decoder = musicgen(K, V, D, tokens_per_cond_step=2.0, size="tiny", aligned_condition=aligned_condition,
                       aligned_upsample=aligned_upsample, aligned_interpolation=aligned_interpolation).eval()
    ids, cond = torch.randint(0, V + 1, (2, K, 9)), torch.randn(2, 5, D)
    full, _ = decoder(ids, cond)
    step, past = decoder(ids[:, :, :6], cond, use_cache=True)
    pieces = [step]
    for t in range(6, 9):
        step, past = decoder(ids[:, :, t : t + 1], cond, past_key_values=past, use_cache=True)
        pieces.append(step)
    assert torch.allclose(torch.cat(pieces, dim=2), full, atol=1e-5)


def test_causal(decoder):
    ids, cond = torch.randint(0, V, (1, K, 8)), torch.randn(1, 5, D)
    changed = ids.clone()
    changed[:, :, 5:] = (changed[:, :, 5:] + 1) % V
    a, _ = decoder(ids, cond)
    b, _ = decoder(changed, cond)
    assert torch.allclose(a[:, :, :5], b[:, :, :5], atol=1e-6)
    assert not torch.allclose(a[:, :, 5:], b[:, :, 5:])


def _tiny_musicgen(num_codebooks=K, vocab=V):
    config = MusicgenConfig(
        text_encoder=T5Config(vocab_size=16, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2),
        audio_encoder=EncodecConfig(num_filters=2, hidden_size=8, codebook_dim=8, codebook_size=vocab, num_lstm_layers=1),
        decoder=MusicgenDecoderConfig(vocab_size=vocab, num_codebooks=num_codebooks, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, ffn_dim=64, pad_token_id=vocab, bos_token_id=vocab),
    )
    return MusicgenForConditionalGeneration(config).eval()


def test_load_full_musicgen_folder(tmp_path):
    """The facebook/musicgen-medium format: a MusicgenForConditionalGeneration folder."""
    source = _tiny_musicgen()
    source.save_pretrained(tmp_path / "musicgen")
    decoder = musicgen(K, V, D, pretrained=str(tmp_path / "musicgen")).eval()
    assert (decoder.width, decoder.num_layers) == (32, 2)
    ids, hidden = torch.randint(0, V + 1, (1, K, 6)), torch.randn(1, 5, 32)
    expected = source.decoder(input_ids=ids.view(K, 6), encoder_hidden_states=hidden).logits
    got = decoder.lm(input_ids=ids.view(K, 6), encoder_hidden_states=hidden).logits
    assert torch.equal(got, expected)


def test_pretrained_codebooks_must_match_codec(tmp_path):
    _tiny_musicgen().save_pretrained(tmp_path / "musicgen")
    with pytest.raises(VMASError, match="codebooks"):
        musicgen(K, 2048, D, pretrained=str(tmp_path / "musicgen"))


def test_missing_weights_one_line(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"MusicGen decoder \(model.decoder.pretrained\)") as info:
        musicgen(K, V, D, pretrained=str(tmp_path / "musicgen-medium"))
    assert "\n" not in str(info.value)


def test_hub_id_without_cache_or_network_names_the_hf_command(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from vmas_lightning.models import pretrained

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(pretrained, "hub_reachable", lambda: False)  # as on an offline machine
    with pytest.raises(MissingWeightsError, match="hub unreachable") as info:
        musicgen(K, V, D, pretrained="facebook/musicgen-medium")
    assert "hf download facebook/musicgen-medium --local-dir DIR" in str(info.value)  # `huggingface-cli` is gone


def test_an_encodec_folder_is_refused_as_the_decoder(tmp_path):
    from vmas_lightning.models.codecs.encodec import encodec

    encodec(size="tiny").model.save_pretrained(tmp_path / "encodec")
    with pytest.raises(VMASError, match=r"holds a 'encodec' model, not MusicGen decoder \(model.decoder.pretrained\)"):
        musicgen(K, V, D, pretrained=str(tmp_path / "encodec"))


def test_truncated_pytorch_model_bin_is_one_line(tmp_path):
    """The older MusicGen layout: config.json and pytorch_model.bin."""
    folder = tmp_path / "musicgen"
    source = _tiny_musicgen()
    source.save_pretrained(folder)
    (folder / "model.safetensors").unlink()
    torch.save(source.state_dict(), folder / "pytorch_model.bin")
    assert musicgen(K, V, D, pretrained=str(folder)).width == 32  # the layout loads
    truncated_copy(folder / "pytorch_model.bin", tmp_path / "part", keep=0.5).replace(folder / "pytorch_model.bin")
    with pytest.raises(InputFileError, match="not a readable folder of MusicGen decoder") as info:
        musicgen(K, V, D, pretrained=str(folder))
    assert "\n" not in str(info.value) and "hf download facebook/musicgen-medium" in str(info.value)
