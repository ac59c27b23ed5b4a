"""mel_rvq codec: fitting, file round trip, geometry, and the committed demo codec's music round trip."""
import numpy as np
import pytest
import torch

from helpers import DEMO_CODEC, DEMO_CONFIG
from vmas_lightning.config_file import load_config
from vmas_lightning.data.demo import synthesize_clip
from vmas_lightning.errors import MissingWeightsError, VMASError
from vmas_lightning.metrics.synthetic import round_trip_quality
from vmas_lightning.models.codecs.mel_rvq import MelRVQConfig, fit_mel_rvq, load_mel_rvq, mel_rvq
from vmas_lightning.registry import AUDIO_CODECS

SMALL = MelRVQConfig(n_mels=64, codebook_size=16)


def tone(seconds: float, hz: float, sample_rate: int = 32000) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def small_codec():
    return fit_mel_rvq([tone(2.0, hz) for hz in (220, 330, 440, 550)], SMALL, iters=10)


def test_geometry_shapes_and_deterministic_decoding(small_codec):
    codec = small_codec
    assert (codec.sample_rate, codec.frame_rate, codec.num_codebooks, codec.codebook_size) == (32000, 50, 4, 16)
    tokens = codec.encode(torch.from_numpy(tone(1.0, 330))[None, None])
    assert tokens.shape == (1, 4, 50) and tokens.dtype == torch.long and 0 <= tokens.min() and tokens.max() < 16
    assert codec.encode(torch.zeros(2, 1, 641)).shape == (2, 4, 2)  # ceil(N / hop) steps
    wav = codec.decode(tokens)
    assert wav.shape == (1, 1, 32000)
    assert torch.equal(wav, codec.decode(tokens))  # zero initial phase: the same waveform every time
    assert codec.codebook_embeddings().shape == (4, 16, 64)
    assert not list(codec.parameters())  # frozen: buffers only


def test_decoded_peak_is_limited_by_one_gain_per_clip(small_codec, tmp_path):
    tokens = small_codec.encode(torch.from_numpy(tone(1.0, 440))[None, None])
    loud = load_mel_rvq(small_codec.save(tmp_path / "codec.pt"))
    loud.mean += np.log(100.0)  # 10x the amplitude
    raw = loud.synthesize(tokens)
    assert raw.abs().max() > 2.0
    wav = loud.decode(tokens)[:, 0]
    assert wav.abs().max() == pytest.approx(0.99, abs=1e-6)
    torch.testing.assert_close(wav, raw * (0.99 / raw.abs().max()))  # scaled, never clipped
    quiet = small_codec.synthesize(tokens)
    assert quiet.abs().max() < 0.99 and torch.equal(small_codec.decode(tokens)[:, 0], quiet)


def test_save_load_round_trip_and_wrong_files(small_codec, tmp_path):
    path = small_codec.save(tmp_path / "codec.pt")
    loaded = AUDIO_CODECS.build({"name": "mel_rvq", "pretrained": str(path), "num_codebooks": 2})
    wav = torch.from_numpy(tone(0.5, 440))[None, None]
    assert torch.equal(loaded.encode(wav), small_codec.encode(wav)[:, :2])
    assert loaded.config == SMALL
    with pytest.raises(MissingWeightsError, match="vmas demo-assets"):
        mel_rvq(str(tmp_path / "missing.pt"))
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(VMASError, match="not a mel_rvq codec file"):
        mel_rvq(str(tmp_path / "other.pt"))
    with pytest.raises(VMASError, match="num_codebooks"):
        load_mel_rvq(path, num_codebooks=5)
    with pytest.raises(VMASError, match="needs model.codec.pretrained"):
        mel_rvq()


def test_rebuilds_from_its_rebuild_options_and_state_dict_alone(small_codec):
    """What a checkpoint records (`rebuild_options` + buffers) gives the same codec without its file."""
    options = small_codec.rebuild_options()
    assert options["pretrained"] is None
    rebuilt = AUDIO_CODECS.build({"name": "mel_rvq", **options})
    assert not torch.equal(rebuilt.codebooks, small_codec.codebooks)  # unfitted until the state dict fills it
    rebuilt.load_state_dict(small_codec.state_dict())
    tokens = small_codec.encode(torch.from_numpy(tone(0.5, 330))[None, None])
    assert torch.equal(rebuilt.encode(torch.from_numpy(tone(0.5, 330))[None, None]), tokens)
    assert torch.equal(rebuilt.decode(tokens), small_codec.decode(tokens))


def test_committed_demo_codec_keeps_pitch_and_onsets_of_held_out_clips():
    """Known answer: every note's pitch class and onset time (the synthesiser's) on clips of a seed
    the codec was not fitted on."""
    sequence = load_config(DEMO_CONFIG, trainer=False).model.sequence
    codec = load_mel_rvq(DEMO_CODEC)
    clips = [synthesize_clip(7, "test", i, sequence) for i in range(6)]
    original = [clip["audio"] for clip in clips]
    decoded = codec.decode(codec.encode(torch.from_numpy(np.stack(original))[:, None]))[:, 0].numpy()
    quality = round_trip_quality(original, list(decoded), sequence.sample_rate, [clip["meta"] for clip in clips])
    assert quality["original_onset_precision"] == quality["original_onset_recall"] == 1.0  # the detector is right
    assert quality["pitch_class_accuracy"] >= 0.9
    assert quality["decoded_onset_recall"] >= 0.95 and quality["decoded_onset_precision"] >= 0.8
    assert quality["peak"] <= 1.0 and quality["dc_offset"] < 1e-3
