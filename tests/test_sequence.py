"""SequenceConfig derives every length of a clip from the paper's numbers (SPEC section 2-3)."""
from vmas_lightning.sequence import SequenceConfig


def test_paper_clip_lengths():
    seq = SequenceConfig()
    assert seq.num_frames == 96
    assert seq.num_samples == 320_000
    assert seq.hop_length == 640
    assert seq.num_tokens == 500
    assert seq.num_delayed_steps == 503
    assert seq.num_features == 48
    assert abs(1 / seq.feature_rate - 0.2083) < 1e-3


def test_other_durations_and_encoders():
    seq = SequenceConfig(frames_per_feature=6).with_duration(25.0)
    assert (seq.num_frames, seq.num_tokens, seq.num_features) == (240, 1250, 40)
    assert seq.frames_for(1.0) == 10 and seq.tokens_for(0.5) == 25 and seq.samples_for(0.25) == 8000
