"""SequenceConfig derives every length of a clip from the paper's numbers (SPEC section 2-3)."""
from vmas_lightning.sequence import SequenceConfig


def test_paper_clip_lengths():
    seq = SequenceConfig()
    assert seq.num_frames == 96
    assert seq.num_samples == 320_000
    assert seq.hop_length == 640
    assert seq.num_tokens == 500
    assert seq.num_delayed_steps == 503


def test_other_durations_and_encoders():
    seq = SequenceConfig().with_duration(25.0)
    assert (seq.num_frames, seq.num_tokens) == (240, 1250)
    assert seq.frames_for(1.0) == 10 and seq.tokens_for(0.5) == 25 and seq.samples_for(0.25) == 8000
