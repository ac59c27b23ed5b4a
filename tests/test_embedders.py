"""FAD embedders and KL classifiers: real loading paths fed with small random models saved in the real formats."""
import julius
import numpy as np
import pytest
import torch

from vmas_lightning.errors import MissingWeightsError, VMASError
from vmas_lightning.metrics.embedders import VGGish, VGGishFrontend, vggish, vggish_mel_matrix
from vmas_lightning.registry import AUDIO_CLASSIFIERS, AUDIO_CODECS, AUDIO_EMBEDDERS

# torchvggish's state-dict keys (vggish-10086976.pth), as documented in docs/EVALUATION.md
VGGISH_KEYS = {
    f"{block}.{i}.{p}"
    for block, layers in (("features", (0, 3, 6, 8, 11, 13)), ("embeddings", (0, 2, 4)))
    for i in layers
    for p in ("weight", "bias")
}


def test_registries_list_the_plugins():
    assert {"vggish", "clap", "encodec"} <= set(AUDIO_EMBEDDERS.names())
    assert {"ast", "passt"} <= set(AUDIO_CLASSIFIERS.names())


def test_vggish_mel_matrix_is_htk_triangles_between_125_and_7500_hz():
    mel = vggish_mel_matrix()
    assert mel.shape == (257, 64)
    assert torch.all(mel[0] == 0)  # DC bin zeroed
    hz = np.linspace(0, 8000, 257)
    peaks = hz[mel.argmax(0).numpy()]
    assert np.all(np.diff(peaks) >= 0) and 125 < peaks[0] < 200 and 7000 < peaks[-1] < 7500


def test_vggish_frontend_frames_0_96_s_examples_and_finds_a_tone():
    frontend = VGGishFrontend()
    seconds = 2.0
    wav = torch.sin(2 * torch.pi * 1000 * torch.arange(int(seconds * 16000)) / 16000)[None]
    examples = frontend(wav)
    assert examples.shape == (1, 2, 96, 64)  # 198 10-ms frames -> 2 whole 96-frame examples
    band_hz = np.linspace(0, 8000, 257)[vggish_mel_matrix()[:, examples[0, 0].mean(0).argmax()].argmax()]
    assert abs(band_hz - 1000) < 100
    assert frontend(wav[:, :300]).shape == (1, 0, 96, 64)


@pytest.fixture(scope="module")
def vggish_file(tmp_path_factory):
    torch.manual_seed(1)
    network = VGGish()
    path = tmp_path_factory.mktemp("vggish") / "vggish-test.pth"
    torch.save(network.state_dict(), path)
    return network, path


def test_vggish_loads_a_torchvggish_state_dict(vggish_file):
    network, path = vggish_file
    assert set(torch.load(path, weights_only=True)) == VGGISH_KEYS
    embedder = vggish(pretrained=str(path))
    assert embedder.calibrated and embedder.dim == 128
    wav = torch.randn(2, 1, 64000) * 0.1  # 2 s at 32 kHz
    out = embedder(wav, 32000)
    assert out.shape == (2, 2, 128)
    with torch.no_grad():
        expected = network.eval()(embedder.frontend(julius.resample_frac(wav[:, 0], 32000, 16000)).flatten(0, 1))
    torch.testing.assert_close(out.flatten(0, 1), expected)


def test_vggish_rejects_missing_and_foreign_weights(tmp_path):
    with pytest.raises(MissingWeightsError, match="VGGish"):
        vggish(pretrained=str(tmp_path / "nope.pth"))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(VMASError, match="not a torchvggish VGGish state dict"):
        vggish(pretrained=str(tmp_path / "other.pth"))


def tiny_clap(enable_fusion=True):
    from transformers import ClapConfig, ClapModel

    config = ClapConfig(
        text_config=dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         vocab_size=100, max_position_embeddings=64),
        audio_config=dict(hidden_size=32, depths=[1, 1], num_attention_heads=[1, 1], patch_embeds_hidden_size=16,
                          projection_hidden_size=16, spec_size=256, window_size=8, enable_fusion=enable_fusion),
        projection_dim=8,
    )
    return ClapModel(config).eval()


def test_clap_loads_a_saved_folder_and_embeds_10_s_windows(tmp_path):
    from transformers import ClapFeatureExtractor

    torch.manual_seed(0)
    model, extractor = tiny_clap(), ClapFeatureExtractor()
    model.save_pretrained(tmp_path)
    extractor.save_pretrained(tmp_path)
    embedder = AUDIO_EMBEDDERS.build({"name": "clap", "pretrained": str(tmp_path)})
    assert embedder.dim == 8 and embedder.sample_rate == 48000
    wav = torch.randn(2, 1, 48000 * 12) * 0.1  # 12 s -> a 10-s and a 2-s window
    out = embedder(wav, 48000)
    assert out.shape == (2, 2, 8)
    window = embedder(wav[1:, :, 48000 * 10 :], 48000)  # the second window of clip 1 alone
    torch.testing.assert_close(out[1, 1], window[0, 0])
    assert embedder(torch.randn(1, 1, 16000 * 3), 16000).shape == (1, 1, 8)  # resampled to 48 kHz
    with pytest.raises(MissingWeightsError):
        AUDIO_EMBEDDERS.build({"name": "clap", "pretrained": str(tmp_path / "missing")})


def test_encodec_embedder_returns_the_codec_encoder_latents():
    embedder = AUDIO_EMBEDDERS.build({"name": "encodec", "size": "tiny"})
    codec = AUDIO_CODECS.build({"name": "encodec", "size": "tiny"})
    wav = torch.randn(2, 1, 6400) * 0.1
    out = embedder(wav, 32000)
    assert out.shape == (2, 10, 16) and not embedder.calibrated
    torch.testing.assert_close(out, codec.model.encoder(wav).transpose(1, 2))


def test_ast_loads_a_saved_folder(tmp_path):
    random_ast = AUDIO_CLASSIFIERS.build({"name": "ast", "pretrained": None, "seed": 3})
    assert not random_ast.calibrated and random_ast.num_labels == 527
    random_ast.model.save_pretrained(tmp_path)
    random_ast.feature_extractor.save_pretrained(tmp_path)
    loaded = AUDIO_CLASSIFIERS.build({"name": "ast", "pretrained": str(tmp_path)})
    assert loaded.calibrated and loaded.sample_rate == 16000
    segments = [torch.randn(16000) * 0.1, torch.randn(8000) * 0.1]
    logits = loaded(segments)
    assert logits.shape == (2, 527)
    torch.testing.assert_close(logits, random_ast(segments))
    with pytest.raises(MissingWeightsError, match="AST"):
        AUDIO_CLASSIFIERS.build({"name": "ast", "pretrained": str(tmp_path / "missing")})


def test_passt_slot_explains_why_it_is_unavailable():
    with pytest.raises(VMASError, match="torchaudio"):
        AUDIO_CLASSIFIERS.build("passt")


def test_a_folder_of_another_model_is_refused(tmp_path):
    """CLAP given an AST folder loaded 0 of its tensors and said it was calibrated; AST given a CLAP
    folder said "AST has 2 labels"; the encodec embedder took a MusicGen folder."""
    from transformers import ClapFeatureExtractor
    from test_decoder import _tiny_musicgen

    ast = AUDIO_CLASSIFIERS.build({"name": "ast", "pretrained": None})
    ast.model.save_pretrained(tmp_path / "ast")
    ast.feature_extractor.save_pretrained(tmp_path / "ast")
    tiny_clap().save_pretrained(tmp_path / "clap")
    ClapFeatureExtractor().save_pretrained(tmp_path / "clap")
    _tiny_musicgen().save_pretrained(tmp_path / "musicgen")
    with pytest.raises(VMASError, match="holds a 'audio-spectrogram-transformer' model, not CLAP; get laion/larger_clap_music"):
        AUDIO_EMBEDDERS.build({"name": "clap", "pretrained": str(tmp_path / "ast")})
    with pytest.raises(VMASError, match="holds a 'clap' model, not AST; get MIT/ast-finetuned-audioset"):
        AUDIO_CLASSIFIERS.build({"name": "ast", "pretrained": str(tmp_path / "clap")})
    with pytest.raises(VMASError, match="holds a 'musicgen' model, not EnCodec"):
        AUDIO_EMBEDDERS.build({"name": "encodec", "pretrained": str(tmp_path / "musicgen")})


def test_vggish_of_another_shape_is_one_line(tmp_path):
    state = VGGish().state_dict()
    state["embeddings.4.weight"] = torch.zeros(256, 4096)  # a 256-d head: not VGGish's 128
    torch.save(state, tmp_path / "wide.pth")
    with pytest.raises(VMASError, match=r"1 of another shape \(e.g. embeddings.4.weight \[256, 4096\], expected \[128, 4096\]\)"):
        vggish(pretrained=str(tmp_path / "wide.pth"))
