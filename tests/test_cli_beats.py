"""`vmas beats` on small real videos: a texture that jumps at known frames and clicks at known times."""
import json

import librosa
import pytest
import soundfile
from helpers import one_line_error
import numpy as np
from media import cut_frames, write_video
from test_beats import clicks, moving_texture

from vmas_lightning.beats import FlowSeries
from vmas_lightning.beats.plot import plot_beats
from vmas_lightning.cli.main import main
from vmas_lightning.sequence import SequenceConfig

FPS = 12
SAMPLE_RATE = 32000
JUMPS = {8: 4, 20: -4, 31: 4}  # frames 8, 20, 31 -> 0.667 s, 1.667 s, 2.583 s -> steps 33, 83, 129
CLICK_STEPS = [33, 60, 131]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("beats")
    frames = moving_texture(3 * FPS, JUMPS)
    music = clicks(CLICK_STEPS, 3.0, SAMPLE_RATE)
    config = root / "config.yaml"
    config.write_text(f"model:\n  sequence:\n    fps: {FPS}\n    frame_size: 64\ndata:\n  beats:\n    onset_detector: librosa\n    match_window: 5\n")
    soundfile.write(root / "music.wav", librosa.clicks(times=[0.502], sr=SAMPLE_RATE, length=3 * SAMPLE_RATE), SAMPLE_RATE)
    return {
        "with_audio": write_video(root / "clip.mp4", frames, FPS, audio=music, sample_rate=SAMPLE_RATE),
        "silent": write_video(root / "silent.mp4", frames, FPS),
        "wav": root / "music.wav",
        "config": config,
        "root": root,
    }


def test_json_reports_beats_and_overlaps_in_seconds(media, capsys):
    assert main(["beats", "--video", str(media["with_audio"]), "--config", str(media["config"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["soundtrack"] is True
    assert report["music_beats"] == [0.66, 1.2, 2.62]
    assert report["video_beats"] == [0.66, 1.66, 2.58]
    assert report["overlaps"] == [0.66, 2.62]
    assert report["overlap_share"] == pytest.approx(2 / 3, abs=1e-3)
    assert report["flow"]["max"] > 1.0 and report["duration_s"] == 3.0


def test_audio_file_replaces_the_soundtrack_and_plot_is_written(media, capsys):
    plot = media["root"] / "beats.png"
    args = ["beats", "--video", str(media["with_audio"]), "--audio", str(media["wav"]), "--config", str(media["config"]),
            "--plot", str(plot)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "music beats (1): 0.50" in out and "video beats (3): 0.66 1.66 2.58" in out and "overlaps (0): none" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_video_without_soundtrack_still_gets_video_beats(media, capsys):
    assert main(["beats", "--video", str(media["silent"]), "--config", str(media["config"]), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["soundtrack"] is False and report["music_beats"] is None and report["overlaps"] is None
    assert report["video_beats"] == [0.66, 1.66, 2.58]
    assert "no soundtrack" in captured.err
    assert main(["beats", "--video", str(media["silent"]), "--config", str(media["config"])]) == 0
    assert "music beats (0): none (no soundtrack)" in capsys.readouterr().out


def test_bad_inputs_are_one_line_errors(media, tmp_path, capsys):
    bad_config = tmp_path / "bad.yaml"
    bad_config.write_text("data:\n  beats:\n    peak_windw: 9\n")
    assert main(["beats", "--video", str(media["silent"]), "--config", str(bad_config)]) == 2
    err = one_line_error(capsys)
    assert "bad.yaml" in err and "'beats.peak_windw'" in err
    assert main(["beats", "--video", str(tmp_path / "missing.mp4")]) == 2
    assert "missing.mp4" in one_line_error(capsys)


def test_unwritable_plot_is_one_line_before_the_analysis(media, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    plot = tmp_path / "file.txt" / "beats.png"
    assert main(["beats", "--video", str(tmp_path / "missing.mp4"), "--plot", str(plot)]) == 2  # was: a traceback
    assert f"--plot {plot.parent}: cannot write there" in one_line_error(capsys)


CUT_SECONDS = 12.0


def cut_times(seed: int) -> np.ndarray:
    """Irregular event times (s), 0.5-1.3 s apart: no period a shift could line up again."""
    times = np.cumsum(np.random.default_rng(seed).uniform(0.5, 1.3, size=40))
    return times[times < CUT_SECONDS - 0.5]


def click_music(times: np.ndarray, seed: int) -> np.ndarray:
    """float32 [N] at 32 kHz: a click on each event over a noise floor."""
    length = round(CUT_SECONDS * SAMPLE_RATE)
    noise = 0.02 * np.random.default_rng(seed).standard_normal(length)
    return (librosa.clicks(times=times, sr=SAMPLE_RATE, length=length, click_freq=800, click_duration=0.08) + noise).astype(np.float32)


def test_alignment_z_score_tells_own_music_from_shifted_and_unrelated(tmp_path, capsys):
    """A 25-fps video cut on the onsets of its own music: the music shifted by 0.5 s and an
    unrelated track have as many beats, but only the own music beats its circular shifts, by
    both scores (music beats near video beats; onset strength at the video beats)."""
    events = cut_times(0)
    own = click_music(events, 0)
    video = write_video(tmp_path / "cuts.mp4", cut_frames(events, CUT_SECONDS, 25), 25, audio=own, sample_rate=SAMPLE_RATE)
    soundfile.write(tmp_path / "shifted.wav", np.roll(own, SAMPLE_RATE // 2), SAMPLE_RATE)
    soundfile.write(tmp_path / "unrelated.wav", click_music(cut_times(1), 1), SAMPLE_RATE)
    scores, onsets = {}, {}
    for name, extra in (("own", []), ("shifted", ["--audio", str(tmp_path / "shifted.wav")]),
                        ("unrelated", ["--audio", str(tmp_path / "unrelated.wav")])):
        assert main(["beats", "--video", str(video), "--json", *extra]) == 0
        report = json.loads(capsys.readouterr().out)
        scores[name], onsets[name] = report["alignment"], report["onset_alignment"]
    assert scores["own"]["z"] > 4.0 and scores["own"]["percentile"] > 99.0
    assert onsets["own"]["z"] > 4.0 and onsets["own"]["percentile"] > 99.0 and onsets["own"]["strength"] > 2.0
    for other in ("shifted", "unrelated"):
        assert scores[other]["z"] < 1.5 and scores[other]["percentile"] < 90.0
        assert onsets[other]["z"] < 2.5 and onsets[other]["z"] < onsets["own"]["z"] - 3  # own 8.9, others -0.3 and 1.4
    assert main(["beats", "--video", str(video)]) == 0
    text = capsys.readouterr().out
    assert "alignment vs. the music circularly shifted: z +" in text
    assert "onset alignment vs. the music circularly shifted: z +" in text and "within 0.02 s of the video beats" in text


def test_plot_of_a_minute_widens_with_the_clip(tmp_path):
    """A 60-s clip gets a 21-inch (2100-px) figure, a 3-s one the 12-inch minimum; with the music on top too."""
    flow = FlowSeries.uniform(np.abs(np.sin(np.arange(1499) / 7.0)).astype(np.float32), 25.0)
    report = {"video": "clip.mp4", "soundtrack": True, "video_beats": [1.0, 2.5, 30.0], "music_beats": [1.02, 3.0, 59.0],
              "overlaps": [1.02], "alignment": {"z": 2.5}}
    png = plot_beats(tmp_path / "long.png", report, flow, SequenceConfig(duration_s=60.0), "clip.mp4").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 2100
    short = plot_beats(tmp_path / "short.png", report, FlowSeries.uniform(flow.magnitude[:74], 25.0),
                       SequenceConfig(duration_s=3.0), "clip.mp4").read_bytes()
    assert int.from_bytes(short[16:20], "big") == 1200
    # `vmas generate --plot`'s: the same plot under the music's spectrogram, as wide, taller
    music = plot_beats(tmp_path / "music.png", report, flow, SequenceConfig(duration_s=60.0), "clip.mp4",
                       audio=np.zeros(60 * 32000, dtype=np.float32), spectrogram=True).read_bytes()
    assert int.from_bytes(music[16:20], "big") == 2100 and int.from_bytes(music[20:24], "big") > int.from_bytes(png[20:24], "big")
