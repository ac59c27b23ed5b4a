"""read_video / read_audio: frame-rate resampling by timestamps, rotation, cropping, bad files."""
import numpy as np
import pytest

from media import cut_frames, gradient_frames, sine, truncated_copy, write_audio_only, write_surround_video, write_video
from vmas_lightning.video_io import frames_at, probe, read_audio, read_video
from vmas_lightning.errors import InputFileError


def numbered_frames(count, height=32, width=48):
    """Frame i has brightness 10 * i, so the chosen source frame can be read back."""
    return np.stack([np.full((height, width, 3), 10 * i, np.uint8) for i in range(count)])


def test_native_rate_keeps_every_frame(tmp_path):
    path = write_video(tmp_path / "a.mp4", numbered_frames(20), fps=10, audio=sine(2.0))
    clip = read_video(path)
    assert clip.frames.shape == (20, 32, 48, 3)
    assert clip.fps == pytest.approx(10.0)
    assert clip.duration_s == pytest.approx(2.0, abs=0.05)
    np.testing.assert_allclose(clip.frames[:, 0, 0, 0], 10 * np.arange(20), atol=3)


def test_resampling_picks_the_frame_on_screen(tmp_path):
    path = write_video(tmp_path / "a.mp4", numbered_frames(20), fps=10)
    clip = read_video(path, fps=4)  # target j at j / 4 s shows source frame floor(j * 10 / 4)
    assert clip.frames.shape[0] == 8
    expected = 10 * np.floor(np.arange(8) * 10 / 4)
    np.testing.assert_allclose(clip.frames[:, 0, 0, 0], expected, atol=3)


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".mov"])
def test_containers(tmp_path, suffix):
    path = write_video(tmp_path / f"a{suffix}", numbered_frames(20), fps=10, audio=sine(2.0, 32000, 500.0))
    clip = read_video(path, fps=5)
    np.testing.assert_allclose(clip.frames[:, 0, 0, 0], 20 * np.arange(10), atol=3)
    assert abs(len(read_audio(path, 32000)) - 64000) < 1200


def test_ntsc_rate_resampled_to_the_model_rate(tmp_path):
    path = write_video(tmp_path / "ntsc.mp4", numbered_frames(24), fps=30000 / 1001)
    clip = read_video(path, fps=9.6)
    assert clip.frames.shape[0] == 7  # floor(24 / 29.97 s * 9.6)
    expected = 10 * np.floor(np.arange(7) / 9.6 * 30000 / 1001 + 1e-6)
    np.testing.assert_allclose(clip.frames[:, 0, 0, 0], expected, atol=3)


def test_variable_frame_rate(tmp_path):
    times = [0.0, 0.1, 0.15, 0.5, 0.55, 0.9]
    path = write_video(tmp_path / "vfr.mkv", numbered_frames(6), fps=10, times=times)
    clip = read_video(path, fps=10, max_seconds=1.0)
    shown = clip.frames[:, 0, 0, 0] / 10
    # slot j at j/10 s shows the last frame with time <= j/10
    expected = [max(i for i, t in enumerate(times) if t <= j / 10 + 1e-9) for j in range(len(shown))]
    np.testing.assert_allclose(shown, expected, atol=0.3)


def interval_average(times, values, fps, count):
    """`read_video(..., sampling="average")` by its definition: slot j averages the source over
    [(j - 1/2) / fps, (j + 1/2) / fps); source frame i stands for the span between the midpoints to
    its neighbours' times (the first and last as wide on their open side)."""
    times = np.asarray(times, float)
    edges = np.concatenate([[times[0] - (times[1] - times[0]) / 2], (times[1:] + times[:-1]) / 2,
                            [times[-1] + (times[-1] - times[-2]) / 2]])
    result = []
    for j in range(count):
        low, high = (j - 0.5) / fps, (j + 0.5) / fps
        weights = np.clip(np.minimum(edges[1:], high) - np.maximum(edges[:-1], low), 0, None)
        result.append(float(weights @ np.asarray(values, float) / weights.sum()))
    return np.array(result)


def test_average_of_a_brightness_ramp_is_its_value_at_each_slot_time(tmp_path):
    """Brightness 10 * i at i / 10 s is 100 t: a slot's average is the ramp at its centre j / 4 s,
    25 j (slot 0 starts before the first frame: the covered part only)."""
    path = write_video(tmp_path / "a.mp4", numbered_frames(20), fps=10)
    clip = read_video(path, fps=4, sampling="average")
    assert clip.frames.shape[0] == 8
    np.testing.assert_allclose(clip.frames[1:, 0, 0, 0], 25 * np.arange(1, 8), atol=3)
    np.testing.assert_allclose(clip.frames[0, 0, 0, 0], 10 * 0.075 / 0.175, atol=3)


def test_average_at_the_source_rate_keeps_every_frame(tmp_path):
    frames = numbered_frames(24)
    path = write_video(tmp_path / "a.mkv", frames, fps=9.6)
    np.testing.assert_allclose(read_video(path, fps=9.6, sampling="average").frames[:, 0, 0, 0], frames[:, 0, 0, 0], atol=3)


def test_average_blend_says_where_a_cut_fell(tmp_path):
    """A hard cut at 30 fps (frames 0-6 dark, from 7 bright) read at 9.6 fps: the slot around it
    blends the shots by their time on screen, and the blend puts the cut at 6.5 / 30 s, halfway
    between the last dark and the first bright source frame (where `last` can only say slot 3)."""
    frames = np.full((30, 32, 32, 3), 20, np.uint8)
    frames[7:] = 220
    path = write_video(tmp_path / "cut.mkv", frames, fps=30, codec="ffv1")
    shown = read_video(path, fps=9.6, sampling="average").frames[:, 0, 0, 0].astype(float)
    bright = (shown - 20) / 200  # fraction of each slot after the cut
    assert bright[:2].max() == pytest.approx(0, abs=0.01) and bright[3:].min() == pytest.approx(1, abs=0.01)
    assert (2.5 - bright[2]) / 9.6 == pytest.approx(6.5 / 30, abs=0.5 / 200 / 9.6)
    last = read_video(path, fps=9.6).frames[:, 0, 0, 0]
    assert list(last[:4] > 120) == [False, False, False, True]


def test_average_of_a_variable_frame_rate(tmp_path):
    times = [0.0, 0.1, 0.2, 0.5, 0.6, 0.9]  # (Matroska keeps 0.1 s steps here)
    path = write_video(tmp_path / "vfr.mkv", numbered_frames(6), fps=10, times=times, codec="ffv1")
    clip = read_video(path, fps=8, max_seconds=1.0, sampling="average")
    expected = interval_average(times, read_video(path).frames[:, 0, 0, 0], 8, len(clip.frames))
    assert len(clip.frames) == 8 and np.ptp(expected % 10) > 2  # slots that blend two frames
    np.testing.assert_allclose(clip.frames[:, 0, 0, 0], expected, atol=0.51)


@pytest.mark.parametrize("sampling", ["last", "average"])
@pytest.mark.parametrize("fps, source_fps, start_s", [(9.6, 30.0, 2.5), (9.6, 25.0, 1.0), (4.0, 10.0, 0.9)])
def test_a_span_read_from_its_start_is_that_span_of_the_whole_read(tmp_path, fps, source_fps, start_s, sampling):
    """`start_s` seeks (keyframes every 12 frames here) yet gives exactly the whole file's slots from
    the first at or after `start_s` up to `max_seconds`: how `vmas test` reads a clip of a long source."""
    from fractions import Fraction

    import av

    count = int(4 * source_fps)
    path = tmp_path / "long.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(source_fps).limit_denominator(1000), options={"g": "12"})
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        for image in np.stack([np.full((32, 48, 3), 10 + 2 * i, np.uint8) for i in range(count)]):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        container.mux(stream.encode())
    whole = read_video(path, fps=fps, size=16, sampling=sampling)
    first = int(np.ceil(start_s * fps - 1e-6))
    span = read_video(path, fps=fps, size=16, start_s=start_s, max_seconds=start_s + 1.0, sampling=sampling)
    expected = whole.frames[first : int(np.floor((start_s + 1.0) * fps + 1e-6))]
    assert span.frames.shape == expected.shape and span.frames.shape[0] >= 3
    np.testing.assert_array_equal(span.frames, expected)
    assert span.duration_s == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(InputFileError, match="no video frames at or after 9"):
        read_video(path, fps=fps, start_s=9.0)


@pytest.mark.parametrize("name, fps, times", [("cuts.mp4", 25.0, None), ("vfr.mkv", 10.0, [0.0, 0.1, 0.15, 0.5, 0.55, 0.9])])
def test_frames_at_are_the_frames_read_video_resamples_to(tmp_path, name, fps, times):
    """Seeking to each time gives what a full decode resampled to the model rate has there: on a
    video with keyframes mid-way (x264 starts one at each cut) and on a variable frame rate."""
    frames = cut_frames([1.3, 4.1, 7.7], 10.0, fps) if times is None else numbered_frames(len(times))
    path = write_video(tmp_path / name, frames, fps=fps, times=times)
    clip = read_video(path, fps=9.6, size=24)
    picks = np.linspace(0, len(clip.frames) - 1, min(16, len(clip.frames))).round().astype(int)
    np.testing.assert_array_equal(frames_at(path, picks / 9.6, size=24), clip.frames[picks])


def test_rotation_is_applied_and_size_is_center_cropped(tmp_path):
    frames = np.zeros((4, 32, 64, 3), np.uint8)
    frames[:, :, :8] = 255  # a white band on the left edge of the stored (landscape) picture
    path = write_video(tmp_path / "phone.mp4", frames, fps=10, rotation=90)
    clip = read_video(path)
    assert clip.rotation == 90
    assert clip.frames.shape[1:3] == (64, 32)  # portrait after a quarter turn
    assert clip.frames[0, -4:, :, 0].mean() > 200  # counter-clockwise: the left edge becomes the bottom
    info = probe(path)
    assert (info.rotation, info.width, info.height) == (90, 32, 64)  # displayed size, as the frames come out
    square = read_video(path, size=16)
    assert square.frames.shape == (4, 16, 16, 3)


def test_read_audio_resamples_to_mono(tmp_path):
    path = write_video(tmp_path / "a.mp4", gradient_frames(10), fps=10, audio=sine(1.0, 32000, 1000.0))
    wav = read_audio(path, 16000)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(len(wav) - 16000) < 1200
    spectrum = np.abs(np.fft.rfft(wav[2000:14000]))
    assert np.argmax(spectrum) * 16000 / 12000 == pytest.approx(1000.0, abs=5)
    assert probe(path).has_audio
    audio_only = probe(write_audio_only(tmp_path / "b.m4a", sine(1.0)))
    assert audio_only.has_audio and not audio_only.has_video and audio_only.duration_s == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(
    "kind, problem",
    [("empty", "empty file"), ("text", "not a readable media file"), ("truncated", "truncated"),
     ("missing", "no such file"), ("audio_only", "no video stream")],
)
def test_bad_files_are_one_line_errors(tmp_path, kind, problem):
    good = write_video(tmp_path / "good.mp4", gradient_frames(40), fps=10, audio=sine(4.0))
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n")
    elif kind == "truncated":
        truncated_copy(good, path, keep=0.5)
    elif kind == "audio_only":
        write_audio_only(tmp_path / "audio_only.m4a", sine(1.0))
        path = tmp_path / "audio_only.m4a"
    with pytest.raises(InputFileError) as err:
        read_video(path)
    message = str(err.value)
    assert str(path) in message and problem in message and "\n" not in message


@pytest.mark.parametrize("channels", [2, 6])
def test_stereo_and_5_1_are_down_mixed_without_gain(tmp_path, channels):
    """Every channel at 0.9 of full scale: the mono mix stays at 0.9 (FFmpeg's down-mix gave 1.27 / 2.8)."""
    tone = sine(2.0, 48000, 440.0) / 0.3 * 0.9
    path = write_surround_video(tmp_path / f"{channels}ch.mp4", gradient_frames(20), 10, np.tile(tone, (channels, 1)))
    wav = read_audio(path, 32000)
    assert wav.ndim == 1 and np.abs(wav).max() == pytest.approx(0.9, abs=0.03)
    assert read_audio(path, 32000, mono=False).shape[0] == channels


def test_video_without_audio_track(tmp_path):
    path = write_video(tmp_path / "silent.mp4", gradient_frames(10), fps=10)
    with pytest.raises(InputFileError, match="no audio track"):
        read_audio(path, 32000)


def test_a_large_frame_is_scaled_by_ffmpeg_first_with_nearly_the_same_pixels(tmp_path, monkeypatch):
    """1024x576 read at 64 px (9x): FFmpeg's area filter to 128 px, then OpenCV's, as one OpenCV area
    filter would give within a level or two; a 256-px source (4x) is read as before, exactly."""
    import cv2

    from media import texture
    from vmas_lightning import video_io

    large = [cv2.resize(texture(seed, 256), (1024, 576), interpolation=cv2.INTER_CUBIC) for seed in range(4)]
    small = [texture(seed, 256) for seed in range(4)]
    paths = [write_video(tmp_path / f"{name}.mp4", np.stack(frames), 10.0) for name, frames in (("large", large), ("small", small))]

    def both_readers(path):  # read_video (generation) and iter_frames (beats' flow) at 64 px
        return read_video(path, fps=5.0, size=64).frames, np.stack([frame for _, frame in video_io.iter_frames(path, size=64)[1]])

    fast = [both_readers(path) for path in paths]
    monkeypatch.setattr(video_io, "PRESCALE_ABOVE", 10**9)  # every frame converted at full size
    slow = [both_readers(path) for path in paths]
    for reader in range(2):
        difference = np.abs(fast[0][reader].astype(int) - slow[0][reader])
        assert 0 < difference.mean() < 1.5 and difference.max() <= 16, (reader, difference.mean(), difference.max())
        assert np.array_equal(fast[1][reader], slow[1][reader])
