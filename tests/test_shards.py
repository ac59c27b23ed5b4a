"""The shard format: compressed frames and audio round-trip, config reading errors."""
import numpy as np
import pytest

from media import gradient_frames, sine
from dataclasses import replace

from helpers import TINY_CONFIG
from vmas_lightning.data.shards import (ClipAnnotator, ShardConfig, decode_flac, decode_sample, encode_flac, encode_sample,
                                        pack_jpegs, packed_frame_count, unpack_jpegs)
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


def test_audio_beyond_full_scale_is_scaled_not_clipped_and_the_gain_recorded():
    config = ShardConfig.from_configs(TINY_CONFIG)
    config = replace(config, sequence=config.sequence.with_duration(1.0))
    annotate = ClipAnnotator(config)
    frames = gradient_frames(config.sequence.num_frames, 64, 64)
    loud = sine(1.0) * 5.0  # peak 1.5
    stored = decode_sample(encode_sample(annotate("loud", "src.mp4", 0.0, frames, loud, {"genre": "x"}), 32000))
    assert stored["meta"] == {"genre": "x", "audio_gain": pytest.approx(1 / 1.5, abs=1e-6)}
    np.testing.assert_allclose(stored["audio"], loud / 1.5, atol=1.0 / 2**15 + 1e-6)  # the same waveform, quieter
    quiet = decode_sample(encode_sample(annotate("quiet", "src.mp4", 0.0, frames, sine(1.0), {}), 32000))
    assert quiet["meta"] == {} and np.abs(quiet["audio"] - sine(1.0)).max() < 1.0 / 2**15 + 1e-6
    with pytest.raises(ValueError, match="clip"):
        encode_flac(loud, 32000)


def test_shard_config_reads_the_training_config(tmp_path):
    config = ShardConfig.from_configs(TINY_CONFIG)
    assert config.sequence.num_frames == 96 and config.sequence.frame_size == 64
    assert config.beats.match_window == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  sequence:\n    fsp: 10\n")
    with pytest.raises(VMASError, match=r"bad.yaml: .*'sequence.fsp'"):
        ShardConfig.from_configs(bad)
