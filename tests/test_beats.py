"""Music beats, video beats, overlaps and loss weights with known answers (SPEC section 5, Eq. 3-4)."""
import math

import librosa
import numpy as np
import pytest

from vmas_lightning.beats import (
    BeatConfig,
    FlowSeries,
    compute_beats,
    frames_flow,
    music_beats,
    overlap,
    onset_alignment,
    onset_strength_curve,
    shift_alignment,
    video_beats,
)
from vmas_lightning.beats.onsets import BeatTrack, LibrosaOnsets, MadmomOnsets, OnsetPeaks
from vmas_lightning.beats.optical_flow import DISFlow, FarnebackFlow
from vmas_lightning.errors import VMASError
from vmas_lightning.sequence import SequenceConfig

FPS = 12.0  # frame times j / 12 s never fall on a 20 ms token boundary unless j % 6 == 0
RATE = 50.0


def moving_texture(num_frames: int, jumps: dict[int, int], size: int = 64) -> np.ndarray:
    """uint8 [F, size, size, 3]: a random texture that stands still except at frame j, where it has moved by jumps[j] px."""
    texture = (np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    left = 16
    for j in range(num_frames):
        left += jumps.get(j, 0)
        frames[j, 20:44, left : left + 24] = texture
    return frames


def clicks(steps: list[int], seconds: float, sample_rate: int) -> np.ndarray:
    """float32 [N]: clicks 2 ms after the start of each token step (librosa reports an onset up to one 16 ms hop late)."""
    times = [s / RATE + 0.002 for s in steps]
    return librosa.clicks(times=times, sr=sample_rate, length=round(seconds * sample_rate)).astype(np.float32)


def drum_track(seconds: float = 10.0, sample_rate: int = 32000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 [N] and kick times (s) [K]: loud kicks 0.4-0.7 s apart over soft hi-hats every 0.125 s
    (8 onsets per second) and a noise floor, like a dense mix whose beats are the kicks."""
    rng = np.random.default_rng(seed)
    length = round(seconds * sample_rate)
    kicks = np.cumsum(rng.uniform(0.4, 0.7, size=round(seconds * 3)))
    kicks = kicks[kicks < seconds - 0.3]
    hats = librosa.clicks(times=np.arange(0.0625, seconds - 0.1, 0.125), sr=sample_rate, length=length,
                          click_freq=4000, click_duration=0.02)
    kick = librosa.clicks(times=kicks, sr=sample_rate, length=length, click_freq=500, click_duration=0.1)
    return (0.15 * hats + kick + 0.02 * rng.standard_normal(length)).astype(np.float32), kicks


def test_onset_peaks_are_the_kicks_not_every_onset():
    wav, kicks = drum_track()
    every_onset = LibrosaOnsets()(wav, 32000)
    beats = OnsetPeaks()(wav, 32000)
    assert len(every_onset) / 10.0 > 5.0  # librosa's defaults also take the hi-hats
    assert 1.0 <= len(beats) / 10.0 <= 4.0
    assert beats[0] < 0.1  # the mix starting from silence is a beat too
    assert len(beats[1:]) == len(kicks) and np.abs(beats[1:] - kicks).max() < 0.04  # within two 16-ms hops
    assert np.all(np.diff(OnsetPeaks(min_interval_s=1.0)(wav, 32000)) >= 1.0 - 1e-9)


def test_beat_track_gives_a_musical_rate_and_bad_options_are_one_line():
    wav, _ = drum_track()
    assert 1.0 <= len(BeatTrack()(wav, 32000)) / 10.0 <= 4.0
    assert OnsetPeaks()(np.zeros(32000, np.float32), 32000).size == 0
    with pytest.raises(VMASError, match=r"^onset detector 'onset_peaks': min_interval_s must be a number >= 0, got -1$"):
        OnsetPeaks(min_interval_s=-1)
    with pytest.raises(VMASError, match=r"^onset detector 'onset_peaks': window_s must be a number > 0, got '0.1'$"):
        OnsetPeaks(window_s="0.1")
    with pytest.raises(VMASError, match=r"^onset detector 'beat_track': hop_length must be an integer >= 1, got 0$"):
        BeatTrack(hop_length=0)


def test_music_beats_floor_times_to_token_steps():
    beats = music_beats(np.array([-0.1, 0.0, 0.019, 0.02, 3.33, 9.99, 10.0]), num_tokens=500, token_rate=RATE)
    assert beats.dtype == np.float32 and beats.shape == (500,)
    assert np.flatnonzero(beats).tolist() == [0, 1, 166, 499]


def test_clicks_give_music_beats_at_their_steps():
    steps = [15, 36, 55, 82, 100, 126]
    onsets = LibrosaOnsets()(clicks(steps, 3.0, 32000), 32000)
    assert np.flatnonzero(music_beats(onsets, 150, RATE)).tolist() == steps


def test_silence_has_no_onsets():
    assert LibrosaOnsets()(np.zeros(32000, np.float32), 32000).size == 0
    assert LibrosaOnsets()(np.zeros(0, np.float32), 32000).size == 0


def test_motion_spikes_give_video_beats_at_their_steps():
    flow = np.full(119, 0.2, np.float32)  # 120 frames at 12 fps; value i is the motion into frame i + 1
    spike_frames = [7, 20, 33, 50, 100]
    flow[np.array(spike_frames) - 1] = 3.0
    beats = video_beats(FlowSeries.uniform(flow, FPS), num_tokens=500, token_rate=RATE, peak_window=25, min_flow=0.1)
    assert np.flatnonzero(beats).tolist() == [math.floor(j / FPS * RATE) for j in spike_frames] == [29, 83, 137, 208, 416]


def test_video_beats_peak_window_keeps_the_larger_of_close_peaks():
    flow = np.zeros(119, np.float32)
    flow[[19, 21]] = [2.0, 3.0]  # frames 20 and 22, 8 steps apart
    one = video_beats(FlowSeries.uniform(flow, FPS), 500, RATE, peak_window=25)
    two = video_beats(FlowSeries.uniform(flow, FPS), 500, RATE, peak_window=11)
    assert np.flatnonzero(one).tolist() == [91]
    assert np.flatnonzero(two).tolist() == [83, 91]


def test_still_constant_and_edge_motion_give_no_video_beats():
    assert not video_beats(FlowSeries.uniform(np.zeros(119), FPS), 500, RATE, 25, min_flow=0.1).any()
    assert not video_beats(FlowSeries.uniform(np.full(119, 2.0), FPS), 500, RATE, 25, min_flow=0.1).any()
    small = np.zeros(119)
    small[59] = 0.05  # below min_flow
    assert not video_beats(FlowSeries.uniform(small, FPS), 500, RATE, 25, min_flow=0.1).any()
    edge = np.zeros(119)
    edge[0] = 5.0  # peak held flat from the clip start: may lie before the clip
    assert not video_beats(FlowSeries.uniform(edge, FPS), 500, RATE, 25).any()
    assert not video_beats(FlowSeries.uniform(np.zeros(0), FPS), 500, RATE, 25).any()


def test_plateau_gives_one_beat_at_its_middle():
    flow = np.zeros(9)
    flow[[3, 4]] = 1.0  # at 5 fps values sit at 0.8 s and 1.0 s: flat between steps 40 and 49
    beats = video_beats(FlowSeries.uniform(flow, 5.0), num_tokens=100, token_rate=RATE, peak_window=25)
    assert np.flatnonzero(beats).tolist() == [45]


def test_overlap_and_weights_hand_computed():
    music = np.zeros(20, np.float32)
    video = np.zeros(20, np.float32)
    music[[2, 6, 10, 17]] = 1
    video[[4, 13, 19]] = 1
    # window 2: music 2 and 6 are 2 steps from video 4, 17 is 2 from 19; 10 is 3 from 13
    o = overlap(music, video, match_window=2)
    assert np.flatnonzero(o).tolist() == [2, 6, 17]
    assert np.flatnonzero(overlap(music, video, match_window=0)).tolist() == []
    assert np.flatnonzero(overlap(music, video, match_window=3)).tolist() == [2, 6, 10, 17]


def test_shift_alignment_hand_computed():
    music, video = np.zeros(20, np.float32), np.zeros(20, np.float32)
    music[[2, 10]] = 1
    video[[2, 10]] = 1
    found = shift_alignment(music, video, match_window=0)
    null = np.array([0.5 if s in (8, 12) else 0.0 for s in range(1, 20)])  # shifts 8 and 12 move one beat onto the other
    assert found["share"] == 1.0 and found["percentile"] == 100.0
    assert found["null_mean"] == pytest.approx(null.mean()) and found["z"] == pytest.approx((1.0 - null.mean()) / null.std())
    # window 1: shifts of 1 step are left out of the null, and beats one step off still count
    video_late = np.roll(video, 1)
    assert shift_alignment(music, video_late, match_window=1)["share"] == 1.0
    assert shift_alignment(music, video_late, match_window=0)["share"] == 0.0
    assert shift_alignment(np.zeros(20), video, 0)["z"] is None and shift_alignment(music, np.zeros(20), 0)["share"] is None
    dense = np.ones(20, np.float32)  # music beats everywhere: every shift scores the same
    assert shift_alignment(dense, video, 0)["z"] is None and shift_alignment(dense, video, 0)["percentile"] == 50.0


def test_onset_alignment_hand_computed():
    strength, video = np.full(20, 1.0), np.zeros(20, np.float32)
    strength[[3, 11]] = 5.0  # mean 1.4
    video[[3, 11]] = 1
    found = onset_alignment(strength, video, match_window=0)
    near = strength / strength.mean()
    null = np.array([near[[(3 + s) % 20, (11 + s) % 20]].mean() for s in range(1, 20)])  # every shift but 0
    assert found["strength"] == pytest.approx(5.0 / 1.4) and found["percentile"] == 100.0
    assert found["null_mean"] == pytest.approx(null.mean()) and found["z"] == pytest.approx((5.0 / 1.4 - null.mean()) / null.std())
    # window 1: a video beat one step off the onset still reads it, and the 1-step shifts leave the null
    late = np.roll(video, 1)
    assert onset_alignment(strength, late, 1)["strength"] == pytest.approx(5.0 / 2.2)  # windowed mean: (6 x 5 + 14) / 20
    assert onset_alignment(strength, late, 0)["strength"] == pytest.approx(1.0 / 1.4)
    assert onset_alignment(strength, np.zeros(20), 0)["z"] is None
    assert onset_alignment(np.zeros(20), video, 0)["strength"] is None  # silent music
    assert onset_alignment(np.ones(20), video, 0)["z"] is None  # no onset anywhere stronger: every shift the same


def test_onset_strength_curve_peaks_at_the_clicks():
    rate, sr = 50.0, 32000
    clicks = np.array([0.5, 1.3, 2.02])
    wav = librosa.clicks(times=clicks, sr=sr, length=3 * sr, click_duration=0.05) + 0.01 * np.random.default_rng(0).standard_normal(3 * sr)
    curve = onset_strength_curve(wav, sr, num_tokens=150, token_rate=rate)
    assert curve.shape == (150,) and curve.dtype == np.float32
    peaks = np.sort(np.argsort(curve)[-3:])
    assert np.abs(peaks - np.floor(clicks * rate)).max() <= 1  # within one 20-ms step of each click
    assert not onset_strength_curve(np.zeros(3 * sr), sr, 150, rate).any()


@pytest.mark.parametrize("flow_name", ["farneback", "dis"])
def test_compute_beats_end_to_end(flow_name):
    """A texture that jumps into frames 8, 20, 31 (steps 33, 83, 129) and clicks at steps 33, 60, 131."""
    sequence = SequenceConfig(duration_s=3.0, fps=FPS, sample_rate=32000)
    frames = moving_texture(sequence.num_frames, {8: 4, 20: -4, 31: 4})
    wav = clicks([33, 60, 131], sequence.duration_s, sequence.sample_rate)
    config = BeatConfig(onset_detector="librosa", optical_flow=flow_name, match_window=5)
    beats = compute_beats(wav, sequence.sample_rate, frames_flow(frames, FPS, config), sequence, config)
    assert {k: (v.dtype, v.shape) for k, v in beats.items()} == {
        k: (np.float32, (150,)) for k in ("music_beats", "video_beats", "overlap")
    }
    assert np.flatnonzero(beats["music_beats"]).tolist() == [33, 60, 131]
    assert np.flatnonzero(beats["video_beats"]).tolist() == [33, 83, 129]
    assert np.flatnonzero(beats["overlap"]).tolist() == [33, 131]


def test_flow_magnitude_spikes_at_the_moving_pair():
    frames = moving_texture(12, {5: 3})
    for flow in (FarnebackFlow(), DISFlow()):
        magnitude = flow(frames)
        assert magnitude.shape == (11,) and magnitude.dtype == np.float64  # as the MV-Align protocol averages
        assert magnitude.argmax() == 4 and magnitude[4] > 1.0
        assert np.all(np.delete(magnitude, 4) < 0.01)
    with pytest.raises(VMASError, match=r"uint8 RGB frames"):
        FarnebackFlow()(frames[..., 0])
    with pytest.raises(VMASError, match="unknown preset 'slow'"):
        DISFlow(preset="slow")


def test_madmom_missing_is_a_one_line_error():
    try:
        import madmom  # noqa: F401
    except Exception:
        with pytest.raises(VMASError, match=r"pip install vmas-lightning\[madmom\]") as err:
            MadmomOnsets()
        assert "Python 3.11" in str(err.value) and "\n" not in str(err.value)
    else:
        pytest.skip("madmom is installed")


@pytest.mark.parametrize(
    "options, message",
    [({"peak_window": 0}, "peak_window"), ({"match_window": -1}, "match_window"),
     ({"onset_match_window": -1}, r"^beats: onset_match_window must be >= 0 token steps, got -1$"),
     ({"min_prominence": 1.0}, r"min_prominence must be in \[0, 1\), got 1.0"),
     ({"flow_fps": 0}, "flow_fps must be > 0 frames per second")],
)
def test_bad_beat_config(options, message):
    with pytest.raises(VMASError, match=message):
        BeatConfig(**options)
