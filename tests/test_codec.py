"""EnCodec codec: geometry, frozen, deterministic tiny preset, codebooks, local-folder loading."""
import pytest
import torch

from safetensors.torch import load_file, save_file

from media import truncated_copy
from vmas_lightning.errors import InputFileError, MissingWeightsError, VMASError
from vmas_lightning.models.codecs.encodec import encodec


@pytest.fixture(scope="module")
def codec():
    return encodec(size="tiny")


def test_tiny_codec_geometry_and_round_trip(codec):
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.codebook_size) == (32000, 50, 4, 256)
    wav = torch.randn(2, 1, 16000) * 0.1
    tokens = codec.encode(wav)
    assert tokens.shape == (2, 4, 25) and tokens.dtype == torch.long
    assert 0 <= tokens.min() and tokens.max() < 256 and tokens.unique().numel() > 20
    assert codec.decode(tokens).shape == (2, 1, 16000)


def test_full_size_preset_matches_encodec_32khz():
    with torch.device("meta"):
        codec = encodec(size="32khz")
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.codebook_size) == (32000, 50, 4, 2048)
    assert codec.codebook_embeddings().shape == (4, 2048, 128)


def test_frozen(codec):
    assert not any(p.requires_grad for p in codec.parameters())
    codec.train()
    assert not codec.model.training


def test_seeded_weights_are_reproducible(codec):
    wav = torch.randn(1, 1, 6400) * 0.1
    assert torch.equal(encodec(size="tiny", seed=0).encode(wav), codec.encode(wav))
    assert not torch.equal(encodec(size="tiny", seed=1).encode(wav), codec.encode(wav))


def test_codebook_embeddings_are_the_quantizer_vectors(codec):
    tokens = codec.encode(torch.randn(1, 1, 6400) * 0.1)  # [1, K, T]
    table = codec.codebook_embeddings()  # [K, V, Dc]
    summed = sum(table[k][tokens[0, k]] for k in range(4))  # [T, Dc]
    quantized = codec.model.quantizer.decode(tokens.transpose(0, 1))  # [1, Dc, T]
    assert torch.allclose(summed, quantized[0].T, atol=1e-5)


def test_load_local_folder(codec, tmp_path):
    codec.model.save_pretrained(tmp_path / "encodec")
    loaded = encodec(pretrained=str(tmp_path / "encodec"))
    wav = torch.randn(1, 1, 6400) * 0.1
    assert torch.equal(loaded.encode(wav), codec.encode(wav))


def test_missing_weights_one_line(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"EnCodec \(model.codec.pretrained\)") as info:
        encodec(pretrained=str(tmp_path / "encodec_32khz"))
    assert str(tmp_path / "encodec_32khz") in str(info.value) and "\n" not in str(info.value)


def test_a_musicgen_folder_is_refused_as_the_codec(tmp_path):
    """It holds an EnCodec inside: 112 of 116 tensors stayed random and training went on."""
    from test_decoder import _tiny_musicgen

    _tiny_musicgen().save_pretrained(tmp_path / "musicgen")
    with pytest.raises(VMASError, match=r"holds a 'musicgen' model, not EnCodec \(model.codec.pretrained\); "
                                        r"get facebook/encodec_32khz with `hf download"):
        encodec(pretrained=str(tmp_path / "musicgen"))


def test_weights_missing_tensors_are_refused(codec, tmp_path):
    codec.model.save_pretrained(tmp_path / "encodec")
    weights = tmp_path / "encodec" / "model.safetensors"
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if not k.startswith("quantizer.")}, weights)  # codebooks left out
    with pytest.raises(VMASError, match=r"tensors of EnCodec .* are not in its weights \(e.g. quantizer\."):
        encodec(pretrained=str(tmp_path / "encodec"))


@pytest.mark.parametrize("broken", ["truncated", "no_weights"])
def test_broken_folder_is_one_line(codec, tmp_path, broken):
    folder = tmp_path / "encodec"
    codec.model.save_pretrained(folder)
    weights = folder / "model.safetensors"
    if broken == "truncated":  # a download cut short
        truncated_copy(weights, tmp_path / "part", keep=0.6).replace(weights)
    else:
        weights.unlink()
    with pytest.raises(InputFileError, match="not a readable folder of EnCodec") as info:
        encodec(pretrained=str(folder))
    assert str(folder) in str(info.value) and "\n" not in str(info.value)
