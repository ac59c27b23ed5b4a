"""MV-Align (AV-Align protocol): known answers on synthetic motion events and audio clicks."""
import cv2
import numpy as np
import pytest
import soundfile
import torch
from media import blob_video, write_video

from vmas_lightning.beats.optical_flow import FarnebackFlow
from vmas_lightning.errors import VMASError
from vmas_lightning.metrics import MVAlign, mv_align, mv_align_score
from vmas_lightning.metrics.mv_align import (
    AUDIO_RATE,
    FARNEBACK,
    MODEL_RATE_FRAMES,
    SOURCE_NATIVE_RATE,
    VideoPeaks,
    align_score,
    audio_onsets,
    flow_trajectory,
    frames_peaks,
    intersection_over_union,
    source_peaks,
    video_peaks,
)

FPS, SECONDS, EVENTS = 10, 6, (1.0, 2.0, 3.0, 4.0, 5.0)


def clicks(times, sample_rate=AUDIO_RATE, seconds=SECONDS) -> np.ndarray:
    """Silence with a 30-ms decaying 1-kHz click at each time."""
    wav = np.zeros(int(seconds * sample_rate), np.float32)
    t = np.arange(int(0.03 * sample_rate)) / sample_rate
    for time in times:
        start = int(time * sample_rate)
        wav[start : start + len(t)] += np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.005)
    return wav


def test_protocol_pieces_find_the_events():
    trajectory = flow_trajectory(blob_video(EVENTS, FPS, SECONDS))
    assert trajectory.shape == (SECONDS * FPS,)
    assert video_peaks(trajectory, FPS) == pytest.approx(list(EVENTS))
    onsets = audio_onsets(clicks(EVENTS))
    assert len(onsets) == len(EVENTS) and np.all(np.abs(onsets - np.array(EVENTS)) < 1 / FPS)


@pytest.mark.parametrize("sample_rate", [AUDIO_RATE, 32000])
def test_clicks_on_the_events_score_one_and_half_spacing_off_scores_zero(sample_rate):
    video = blob_video(EVENTS, FPS, SECONDS)
    assert mv_align_score(video, FPS, clicks(EVENTS, sample_rate), sample_rate) == 1.0
    shifted = [t + 0.5 for t in EVENTS]
    assert mv_align_score(video, FPS, clicks(shifted, sample_rate), sample_rate) == 0.0


def test_matching_is_greedy_one_to_one_and_strict():
    assert intersection_over_union([1.0, 1.05], [1.0], fps=10) == pytest.approx(1 / 2)  # peak used once
    assert intersection_over_union([1.1], [1.0], fps=10) == 0.0  # |a - v| == 1/fps is no match
    assert intersection_over_union([0.95, 1.95], [1.0, 2.0, 3.0], fps=10) == pytest.approx(2 / 3)
    assert intersection_over_union([], [], fps=10) == 0.0  # defined value for no events at all


def test_peaks_are_strict_local_maxima_above_threshold():
    trajectory = np.array([0.0, 0.5, 0.5, 0.0, 0.09, 0.0, 0.3, 0.0, 1.0])
    assert video_peaks(trajectory, fps=2) == [3.0]  # plateau, < 0.1 and last frame excluded


def test_the_flow_is_the_farneback_plugin_with_the_protocol_settings():
    """One Farneback code path: the plugin's defaults are the protocol's, its means the protocol's float64."""
    assert FarnebackFlow().params == FARNEBACK
    video = blob_video(EVENTS, FPS, SECONDS)
    gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in video[:3]]
    flow = cv2.calcOpticalFlowFarneback(gray[0], gray[1], None, *FARNEBACK)
    expected = cv2.mean(cv2.cartToPolar(flow[..., 0], flow[..., 1])[0])[0]  # the reference code's lines
    trajectory = flow_trajectory(video[:3])
    assert trajectory.dtype == np.float64 and trajectory[0] == trajectory[1] == expected


def test_metric_averages_clips_and_keeps_per_clip_scores_and_protocols():
    peaks = frames_peaks(blob_video(EVENTS, FPS, SECONDS), FPS)
    assert peaks == VideoPeaks(EVENTS, float(FPS), MODEL_RATE_FRAMES)
    wav = torch.from_numpy(np.stack([clicks(EVENTS, 32000), clicks([t + 0.5 for t in EVENTS], 32000)]))[:, None]
    metric = MVAlign()
    metric.update([peaks, peaks], wav, 32000)
    assert metric.per_clip()["mv_align"].tolist() == [1.0, 0.0]
    assert metric.per_clip()["mv_align_protocol"] == [MODEL_RATE_FRAMES] * 2
    assert metric.compute() == {"mv_align": 0.5, "mv_align_protocol": MODEL_RATE_FRAMES}
    native = VideoPeaks(EVENTS, float(FPS), SOURCE_NATIVE_RATE)
    metric.update([native, native], wav, 32000)
    assert metric.compute()["mv_align_protocol"] == "mixed"
    metric.reset()
    metric.update([native], wav[:1], 32000)
    assert metric.compute() == {"mv_align": 1.0, "mv_align_protocol": SOURCE_NATIVE_RATE}
    with pytest.raises(ValueError, match="unknown MV-Align protocol"):
        metric.update([VideoPeaks((), 10.0, "guess")], wav[:1], 32000)


def test_a_clip_of_a_source_video_is_read_at_its_native_rate_from_its_start(tmp_path):
    """The clip [2.6, 6.6) s of a 25-fps source: peaks at the jumps inside it, from the clip's first
    frame, at the source's 25 fps (one frame = 40 ms tolerance), as if the clip were a file of its own."""
    events, fps = (1.0, 3.0, 4.2, 5.4, 7.0), 25
    path = write_video(tmp_path / "source.mp4", blob_video(events, fps=fps, seconds=8), fps)
    clip = source_peaks(path, 2.6, 4.0)
    assert clip.fps == fps and clip.protocol == SOURCE_NATIVE_RATE
    assert clip.times == pytest.approx([0.4, 1.6, 2.8])
    whole = source_peaks(path)
    assert whole.times == pytest.approx(list(events))
    assert align_score(clip, clicks([0.4, 1.6, 2.8], seconds=4), AUDIO_RATE) == 1.0
    assert align_score(clip, clicks([0.5, 1.7, 2.9], seconds=4), AUDIO_RATE) == 0.0  # 0.1 s late: over one frame
    with pytest.raises(VMASError, match=r"source\.mp4.*at least 2 video frames in 7.97-11.97 s for optical flow, got 0"):
        source_peaks(path, 7.97, 4.0)


def test_mv_align_of_a_video_file_with_its_own_and_another_soundtrack(tmp_path):
    path = write_video(tmp_path / "clip.mp4", blob_video(EVENTS, FPS, SECONDS), FPS, clicks(EVENTS, 44100), 44100)
    assert mv_align(path) == 1.0
    shifted = tmp_path / "shifted.wav"
    soundfile.write(shifted, clicks([t + 0.5 for t in EVENTS], 44100), 44100)
    assert mv_align(path, shifted) == 0.0


def test_mv_align_of_a_bad_file_is_a_one_line_error(tmp_path):
    silent = write_video(tmp_path / "silent.mp4", blob_video(EVENTS, FPS, SECONDS)[:10], FPS)
    with pytest.raises(VMASError, match="silent.mp4"):
        mv_align(silent)  # no soundtrack
    with pytest.raises(VMASError, match="missing.mp4"):
        mv_align(tmp_path / "missing.mp4")
