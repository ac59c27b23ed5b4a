"""The shard format: compressed frames and audio round-trip, config reading errors."""
import numpy as np
import pytest

from media import gradient_frames, sine
from vmas_lightning.data.shards import (DataConfig, decode_flac, encode_flac, pack_jpegs, packed_frame_count,
                                        unpack_jpegs)
from vmas_lightning.errors import VMASError


def test_jpeg_pack_round_trip():
    frames = gradient_frames(5, 32, 48)
    restored = unpack_jpegs(pack_jpegs(frames))
    assert restored.shape == frames.shape and restored.dtype == np.uint8
    mse = np.mean((restored.astype(float) - frames.astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 24  # PSNR of quality-90 JPEG (4:2:0 chroma) on saturated 8-px blocks


def test_only_the_asked_frames_are_decoded():
    frames = gradient_frames(6, 32, 48)
    blob = pack_jpegs(frames)
    assert packed_frame_count(blob) == 6
    np.testing.assert_array_equal(unpack_jpegs(blob, slice(2, 5)), unpack_jpegs(blob)[2:5])


def test_flac_round_trip_is_16_bit_exact():
    wav = sine(0.5, 32000, 300.0)
    restored = decode_flac(encode_flac(wav, 32000))
    assert restored.shape == wav.shape
    assert np.abs(restored - wav).max() < 1.0 / 2**15 + 1e-6


def test_data_config_reads_the_training_config(tmp_path):
    from conftest import TINY_CONFIG

    config = DataConfig.from_yaml(TINY_CONFIG)
    assert config.sequence.num_frames == 96 and config.sequence.frame_size == 64
    assert config.beats.match_window == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  sequence:\n    fsp: 10\n")
    with pytest.raises(VMASError, match=r"model.sequence has no key 'fsp'"):
        DataConfig.from_yaml(bad)
