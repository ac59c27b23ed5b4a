"""MV-Align (AV-Align protocol): known answers on synthetic motion events and audio clicks."""
import numpy as np
import pytest
import soundfile
import torch
from media import write_video

from vmas_lightning.errors import VMASError
from vmas_lightning.metrics import MVAlign, mv_align, mv_align_score
from vmas_lightning.metrics.mv_align import AUDIO_RATE, audio_onsets, flow_trajectory, intersection_over_union, video_peaks

FPS, SECONDS, EVENTS = 10, 6, (1.0, 2.0, 3.0, 4.0, 5.0)


def blob_video(events=EVENTS, fps=FPS, seconds=SECONDS, size=64) -> np.ndarray:
    """uint8 [F, size, size, 3]: a still Gaussian blob that jumps 8 px sideways at each event time."""
    yy, xx = np.mgrid[:size, :size]
    event_frames = {round(t * fps) for t in events}
    x0, frames = size / 2 - 4, []
    for i in range(int(seconds * fps)):
        if i in event_frames:
            x0 = size / 2 + 4 if x0 < size / 2 else size / 2 - 4
        blob = 255 * np.exp(-((xx - x0) ** 2 + (yy - size / 2) ** 2) / (2 * 6**2))
        frames.append(np.repeat(blob[..., None], 3, -1).astype(np.uint8))
    return np.stack(frames)


def clicks(times, sample_rate=AUDIO_RATE, seconds=SECONDS) -> np.ndarray:
    """Silence with a 30-ms decaying 1-kHz click at each time."""
    wav = np.zeros(int(seconds * sample_rate), np.float32)
    t = np.arange(int(0.03 * sample_rate)) / sample_rate
    for time in times:
        start = int(time * sample_rate)
        wav[start : start + len(t)] += np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.005)
    return wav


def test_protocol_pieces_find_the_events():
    trajectory = flow_trajectory(blob_video())
    assert trajectory.shape == (SECONDS * FPS,)
    assert video_peaks(trajectory, FPS) == pytest.approx(list(EVENTS))
    onsets = audio_onsets(clicks(EVENTS))
    assert len(onsets) == len(EVENTS) and np.all(np.abs(onsets - np.array(EVENTS)) < 1 / FPS)


@pytest.mark.parametrize("sample_rate", [AUDIO_RATE, 32000])
def test_clicks_on_the_events_score_one_and_half_spacing_off_scores_zero(sample_rate):
    video = blob_video()
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


def test_metric_averages_clips_and_keeps_per_clip_scores():
    video = torch.from_numpy(blob_video())
    wav = torch.from_numpy(np.stack([clicks(EVENTS, 32000), clicks([t + 0.5 for t in EVENTS], 32000)]))[:, None]
    metric = MVAlign()
    metric.update(torch.stack([video, video]), FPS, wav, 32000)
    assert metric.per_clip()["mv_align"].tolist() == [1.0, 0.0]
    assert metric.compute().item() == 0.5


def test_mv_align_of_a_video_file_with_its_own_and_another_soundtrack(tmp_path):
    path = write_video(tmp_path / "clip.mp4", blob_video(), FPS, clicks(EVENTS, 44100), 44100)
    assert mv_align(path) == 1.0
    shifted = tmp_path / "shifted.wav"
    soundfile.write(shifted, clicks([t + 0.5 for t in EVENTS], 44100), 44100)
    assert mv_align(path, shifted) == 0.0


def test_mv_align_of_a_bad_file_is_a_one_line_error(tmp_path):
    silent = write_video(tmp_path / "silent.mp4", blob_video()[:10], FPS)
    with pytest.raises(VMASError, match="silent.mp4"):
        mv_align(silent)  # no soundtrack
    with pytest.raises(VMASError, match="missing.mp4"):
        mv_align(tmp_path / "missing.mp4")
