"""Video beats from a video file's own frames (`video_flow`): smooth camera motion gives none, a hard cut one."""
import cv2
import numpy as np
import pytest
from media import cut_frames, texture, write_video

from vmas_lightning.beats import flow_series as flow_series_module
from vmas_lightning.beats import BeatConfig, FlowSeries, video_beats, video_flow
from vmas_lightning.video_io import iter_frames, source_stride
from vmas_lightning.errors import InputFileError

SIZE = 64
SECONDS = 4.0
CUT_S = 1.7


def zoom_video(path, fps: float, cut_s: float | None = None):
    """A continuous zoom-in (25% per second, sub-pixel) on a texture, cut to another texture at `cut_s`."""
    first, second = texture(1), texture(2)
    frames = []
    for j in range(round(fps * SECONDS)):
        t = j / fps
        scale = SIZE / 128 * np.exp(0.25 * t)
        warp = np.array([[scale, 0, SIZE / 2 - 128 * scale], [0, scale, SIZE / 2 - 128 * scale]])
        source = second if cut_s is not None and t >= cut_s else first
        frames.append(cv2.warpAffine(source, warp, (SIZE, SIZE), flags=cv2.INTER_AREA))
    return write_video(path, np.stack(frames), fps)


def beat_times(flow: FlowSeries, config: BeatConfig) -> list[float]:
    num_tokens = round(SECONDS * 50)
    found = video_beats(flow, num_tokens, 50.0, config.peak_window, config.min_flow, config.min_prominence)
    return (np.flatnonzero(found) / 50.0).tolist()


@pytest.mark.parametrize("fps", [25, 30, 60])
def test_continuous_zoom_has_no_video_beats_and_a_cut_has_one(fps, tmp_path):
    config = BeatConfig()
    smooth = video_flow(zoom_video(tmp_path / "zoom.mp4", fps), config, SIZE)
    assert smooth.fps == fps / source_stride(fps, config.flow_fps) and smooth.fps <= 15.0
    assert beat_times(smooth, config) == []
    cut = video_flow(zoom_video(tmp_path / "cut.mp4", fps, CUT_S), config, SIZE)
    first_new_frame = np.ceil(CUT_S * cut.fps - 1e-9) / cut.fps  # the first flow frame showing the new texture
    found = beat_times(cut, config)
    assert len(found) == 1 and abs(found[0] - first_new_frame) <= 0.02


def test_every_local_maximum_of_the_paper_is_many_beats_on_a_zoom(tmp_path):
    """Without the prominence and the frame-rate cap (every source frame, every local maximum), the
    codec's wobble on a 60-fps zoom makes beats; the defaults make none (test above)."""
    config = BeatConfig(flow_fps=None, min_prominence=0.0)
    flow = video_flow(zoom_video(tmp_path / "zoom.mp4", 60), config, SIZE)
    assert flow.fps == 60 and len(beat_times(flow, config)) >= 4


def test_cuts_at_the_demo_geometry_are_one_beat_each_at_the_first_new_frame(tmp_path):
    """9.6 fps, 64 px, 10 s (the demo's clips), cuts off the frame grid between slow sub-pixel pans:
    the flow from frame i to i + 1 sits at frame i + 1's time, so each cut is one beat at the step
    of the first frame showing the new shot, and the drift between cuts makes none. Every local
    maximum (`min_prominence: 0`, as configs/demo.yaml) adds beats from the drift's wobble."""
    fps, cuts = 9.6, np.array([0.8224, 2.1, 3.3938, 4.2509, 5.9652, 6.8224, 8.5366])
    path = write_video(tmp_path / "cuts.mp4", cut_frames(cuts, 10.0, fps), fps)
    first_new_frames = np.floor(np.ceil(cuts * fps) / fps * 50.0)
    found = {}
    for prominence in (BeatConfig().min_prominence, 0.0):
        config = BeatConfig(min_prominence=prominence)
        flow = video_flow(path, config, SIZE)
        found[prominence] = np.flatnonzero(video_beats(flow, 500, 50.0, config.peak_window, config.min_flow, prominence))
    np.testing.assert_array_equal(found[BeatConfig().min_prominence], first_new_frames)
    assert set(first_new_frames) < set(found[0.0]) and len(found[0.0]) >= 2 * len(cuts)


def test_frames_are_dropped_evenly_never_duplicated(tmp_path):
    frames = np.stack([np.full((16, 16, 3), 4 * j, np.uint8) for j in range(60)])  # brightness = 4 x index
    path = write_video(tmp_path / "ramp.mp4", frames, 30)
    assert [source_stride(30, m) for m in (None, 30, 29.9, 15, 14, 9.6)] == [1, 1, 2, 2, 3, 4]
    fps, decoded = iter_frames(path, max_fps=9.6)
    times, images = zip(*decoded)
    assert fps == 7.5 and len(images) == 15
    np.testing.assert_allclose(times, np.arange(0, 60, 4) / 30, atol=1e-3)
    np.testing.assert_allclose([image.mean() / 4 for image in images], np.arange(0, 60, 4), atol=1.0)


def test_chunks_and_windows_give_the_flow_of_the_whole_and_of_a_clip(tmp_path, monkeypatch):
    path = zoom_video(tmp_path / "cut.mp4", 25, CUT_S)
    whole = video_flow(path, BeatConfig(), SIZE)
    monkeypatch.setattr(flow_series_module, "FLOW_CHUNK", 3)
    chunked = video_flow(path, BeatConfig(), SIZE)
    np.testing.assert_array_equal(chunked.magnitude, whole.magnitude)
    np.testing.assert_array_equal(chunked.times, whole.times)
    assert whole.duration_s == pytest.approx(SECONDS, abs=1e-6) and len(whole.times) == 49  # 50 frames at 12.5 fps
    clip = whole.window(1.04, 2.0)  # frames at 1.12 .. 2.96 s: the jump into the frame at 1.04 s is not the clip's
    np.testing.assert_allclose(clip.times, np.arange(1, 25) * 0.08, atol=1e-6)
    assert clip.duration_s == 2.0 and clip.magnitude.argmax() == np.argmin(np.abs(clip.times - 0.72))


def test_too_short_or_not_a_video_is_one_line(tmp_path):
    one_frame = write_video(tmp_path / "one.mp4", np.zeros((1, 16, 16, 3), np.uint8), 25)
    with pytest.raises(InputFileError, match=r"one\.mp4.*needs at least 2 video frames for optical flow, got 1"):
        video_flow(one_frame, BeatConfig(), SIZE)
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(InputFileError, match=r"text\.mp4"):
        video_flow(tmp_path / "text.mp4", BeatConfig(), SIZE)
