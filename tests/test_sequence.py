"""SequenceConfig derives every length of a clip from the paper's numbers (SPEC section 2-3)."""
import pytest

from vmas_lightning.errors import VMASError
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


def test_frame_sampling_is_last_or_average():
    assert SequenceConfig().frame_sampling == "last" and SequenceConfig(frame_sampling="average").frame_sampling == "average"
    with pytest.raises(VMASError, match="frame_sampling must be 'last' or 'average'"):
        SequenceConfig(frame_sampling="blend")
