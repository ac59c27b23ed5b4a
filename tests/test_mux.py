"""Muxing generated music into a copy of the video: lengths, stream copy, rotation, bad files."""

import av
import pytest
import soundfile

from media import decoded_seconds, first_frame_time, make_video, sine, video_packets
from vmas_lightning.errors import InputFileError
from vmas_lightning.generation.mux import mux_audio, video_duration, write_wav

SR = 32000


def test_25_s_silent_video_gets_25_s_of_music_and_the_same_picture(tmp_path):
    source = make_video(tmp_path / "in.mp4", 25, 4)
    out = mux_audio(source, sine(25.3), SR, tmp_path / "out.mp4")
    assert out == tmp_path / "out.mp4"
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert container.streams.audio[0].rate == SR
    assert decoded_seconds(out, 1) == pytest.approx(25.0, abs=0.1)
    assert video_duration(out) == pytest.approx(25.0, abs=1e-6)
    assert video_packets(out) == video_packets(source)  # remuxed, not re-encoded


def test_short_audio_is_padded_to_a_1_s_60_fps_video(tmp_path):
    source = make_video(tmp_path / "in.mov", 1, 60)
    out = mux_audio(source, sine(0.5), SR, tmp_path / "out.mov")
    assert decoded_seconds(out, 1) == pytest.approx(1.0, abs=0.1)


def test_portrait_rotation_is_preserved(tmp_path):
    source = make_video(tmp_path / "phone.mp4", 1, 30, width=32, height=24, rotation=90)
    out = mux_audio(source, sine(1), SR, tmp_path / "out.mp4")
    with av.open(str(out)) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height, frame.rotation) == (32, 24, 90)


def test_keep_original_audio_adds_it_as_a_second_stream(tmp_path):
    source = make_video(tmp_path / "in.mp4", 2, 10, audio_rate=44100)
    out = mux_audio(source, sine(2), SR, tmp_path / "out.mp4", keep_original_audio=True)
    with av.open(str(out)) as container:
        audio = container.streams.audio
        assert [s.rate for s in audio] == [SR, 44100]
        assert audio[0].disposition & av.stream.Disposition.default
        assert not audio[1].disposition & av.stream.Disposition.default
    plain = mux_audio(source, sine(2), SR, tmp_path / "plain.mp4")
    with av.open(str(plain)) as container:
        assert len(container.streams.audio) == 1


def test_container_that_rejects_the_codec_falls_back_to_matroska(tmp_path):
    source = make_video(tmp_path / "in.mp4", 1, 10)
    out = mux_audio(source, sine(1), SR, tmp_path / "out.webm")
    assert out == tmp_path / "out.mkv" and not (tmp_path / "out.webm").exists()
    assert video_packets(out) == video_packets(source)


ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1"}
CONTAINERS = (".mp4", ".mkv", ".webm", ".mov")


@pytest.mark.parametrize("source_container", CONTAINERS)
@pytest.mark.parametrize("codec", ENCODERS)
def test_picture_is_copied_packet_for_packet_in_every_container(tmp_path, codec, source_container):
    """H.264 in Matroska starts with packets that carry no dts: they must be kept (the first keyframe)."""
    encoder = ENCODERS[codec]
    if encoder not in av.codecs_available:
        pytest.skip(f"this PyAV has no {encoder} encoder to make a {codec} source")
    try:
        source = make_video(tmp_path / f"in{source_container}", 2, 10, width=64, height=48, codec=encoder)
    except (ValueError, av.FFmpegError) as err:  # e.g. H.264 in .webm, VP9 in .mov
        pytest.skip(f"PyAV cannot write {codec} in {source_container}: {err}")
    for container in CONTAINERS:
        out = mux_audio(source, sine(2), SR, tmp_path / f"out{container}")
        assert out.suffix in (container, ".mkv")  # .mkv: the container refuses the codec
        assert video_packets(out) == video_packets(source), (codec, source_container, container)
        assert first_frame_time(out) == 0.0
        assert decoded_seconds(out, 1) == pytest.approx(2.0, abs=0.1)


def test_webm_source_stays_webm_with_opus(tmp_path):
    source = make_video(tmp_path / "in.webm", 1, 10, codec="libvpx-vp9")
    out = mux_audio(source, sine(1), SR, tmp_path / "out.webm")
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "opus"
    assert decoded_seconds(out, 1) == pytest.approx(1.0, abs=0.1)


def test_write_wav_is_16_bit_32_khz(tmp_path):
    path = write_wav(tmp_path / "a" / "music.wav", sine(0.5), SR)
    info = soundfile.info(path)
    assert (info.samplerate, info.frames, info.subtype) == (SR, SR // 2, "PCM_16")


@pytest.mark.parametrize("kind, problem", [("empty", "empty file"), ("text", "not a readable media file"), ("truncated", "not a readable media file")])
def test_bad_inputs_are_one_line_input_file_errors(tmp_path, kind, problem):
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("this is not a video\n")
    else:
        data = make_video(tmp_path / "full.mp4", 2, 10).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match=problem) as error:
        mux_audio(path, sine(1), SR, tmp_path / "out.mp4")
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_prediction_writer_writes_wavs_and_muxes_known_sources(tmp_path):
    import torch

    from vmas_lightning.generation.writer import MusicWriter

    source = make_video(tmp_path / "src.mp4", 1, 10)
    prediction = {"id": ["a/clip.1", "b"], "audio": torch.zeros(2, 1, SR), "sample_rate": SR,
                  "video_path": [str(source), None]}
    MusicWriter(str(tmp_path / "out")).write_on_batch_end(None, None, prediction, None, None, 0, 0)
    assert soundfile.info(tmp_path / "out" / "a" / "clip.1.wav").frames == SR
    assert (tmp_path / "out" / "b.wav").is_file()
    assert video_packets(tmp_path / "out" / "a" / "clip.1.mp4") == video_packets(source)
    assert not (tmp_path / "out" / "b.mp4").exists()
