"""`vmas generate` end to end on a tiny untrained checkpoint: lengths, stream copy, rotation, seeds,
bad files, batch mode, EMA weights; its --plot beats are those of `vmas prepare`, `vmas beats` and `vmas test`."""
import json
import os
import shutil
import sys
from pathlib import Path

import av
import lightning as L
import numpy as np
import pytest
import soundfile
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from torch.utils.data import DataLoader

from helpers import TINY_CONFIG, one_line_error
from media import cut_frames, decoded_seconds, gradient_frames, make_video, sine, video_packets, write_gif, write_video
from vmas_lightning.cli.main import main
from vmas_lightning.data.datamodule import VMASDataModule
from vmas_lightning.data.shards import ShardConfig
from vmas_lightning.generation.checkpoint import load_for_inference
from vmas_lightning.errors import VMASError
from vmas_lightning.config import GenerationConfig
from vmas_lightning.config import LossConfig
from vmas_lightning.lit_module import VMASModule
from vmas_lightning.sequence import SequenceConfig

SEQUENCE = SequenceConfig(duration_s=2.5, frame_size=64)
TINY = dict(
    sequence=SEQUENCE,
    encoder={"name": "efficient_hiera", "size": "tiny", "q_strides": [[1, 4, 4], [1, 2, 2], [1, 2, 2]]},
    decoder={"name": "musicgen", "size": "tiny"},
    codec={"name": "encodec", "size": "tiny"},
    loss=LossConfig(alpha=0.0),
    generation=GenerationConfig(top_k=50, overlap_s=1.0),
)


def random_batches(count, batch_size=2):
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "id": [f"clip{i}-{j}" for j in range(batch_size)],
            "video": torch.rand(batch_size, 3, SEQUENCE.num_frames, 64, 64, generator=generator),
            "tokens": torch.randint(0, 256, (batch_size, 4, SEQUENCE.num_tokens), generator=generator),
            "overlap": torch.zeros(batch_size, SEQUENCE.num_tokens),
        }
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A checkpoint written by a 3-step fit with EMA (state_dict = average, current_model_state = raw)."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    trainer = L.Trainer(
        default_root_dir=root, max_steps=3, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[EMAWeightAveraging(decay=0.5), ModelCheckpoint(dirpath=root, filename="last", every_n_train_steps=3)],
    )
    trainer.fit(VMASModule(**TINY), train_dataloaders=DataLoader(random_batches(3), batch_size=None))
    return root / "last.ckpt"


def run(*args):
    return main(["generate", *map(str, args)])


def test_loads_the_ema_weights(ckpt):
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert "current_model_state" in checkpoint  # written by EMAWeightAveraging
    model, sequence, generation = load_for_inference(ckpt)
    name = "decoder.cond_proj.weight"
    assert torch.equal(model.state_dict()[name], checkpoint["state_dict"][f"model.{name}"])
    assert not torch.equal(model.state_dict()[name], checkpoint["current_model_state"][f"model.{name}"])
    assert sequence == SEQUENCE and generation == GenerationConfig(top_k=50, overlap_s=1.0)
    assert not model.training


@pytest.mark.slow
def test_25_s_silent_video(ckpt, tmp_path):
    video = make_video(tmp_path / "long.mp4", 25, 4)
    assert run("--ckpt", ckpt, "--video", video, "--out", tmp_path / "out" / "long", "--seed", 0) == 0
    wav, rate = soundfile.read(tmp_path / "out" / "long.wav")
    assert rate == 32000 and len(wav) / rate == pytest.approx(25.0, abs=0.1)
    muxed = tmp_path / "out" / "long.mp4"
    with av.open(str(muxed)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
    assert decoded_seconds(muxed, 1) == pytest.approx(25.0, abs=0.1)
    assert video_packets(muxed) == video_packets(video)


def test_1_s_60_fps_video_same_seed_same_wav(ckpt, tmp_path):
    video = make_video(tmp_path / "short.mov", 1, 60, audio_rate=44100)
    wavs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert run("--ckpt", ckpt, "--video", video, "--out", tmp_path / name, "--seed", seed, "--keep-original-audio") == 0
        wavs.append((tmp_path / f"{name}.wav").read_bytes())
    assert wavs[0] == wavs[1] and wavs[0] != wavs[2]
    assert decoded_seconds(tmp_path / "a.mov", 1) == pytest.approx(1.0, abs=0.1)
    with av.open(str(tmp_path / "a.mov")) as container:
        assert [s.rate for s in container.streams.audio] == [32000, 44100]


def test_portrait_phone_video_keeps_its_rotation(ckpt, tmp_path):
    video = make_video(tmp_path / "phone.mp4", 2, 30, width=48, height=32, rotation=-90)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert run("--ckpt", ckpt, "--video", video, "--out", out_dir, "--cfg-scale", 1.0, "--no-cache") == 0
    with av.open(str(out_dir / "phone.mp4")) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height, frame.rotation) == (48, 32, -90)


@pytest.mark.parametrize("kind", ["empty", "truncated", "text"])
def test_bad_input_is_one_line_and_non_zero(ckpt, tmp_path, capsys, kind):
    path = tmp_path / "bad.mp4"
    if kind == "empty":
        path.touch()
    elif kind == "text":
        path.write_text("hello\n")
    else:
        data = make_video(tmp_path / "full.mp4", 2, 10).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    assert run("--ckpt", ckpt, "--video", path, "--out", tmp_path / "out") == 2
    assert str(path) in one_line_error(capsys)


def test_batch_skips_bad_files_and_reports_them(ckpt, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    make_video(videos / "good.mp4", 1, 10)
    (videos / "broken.mp4").write_text("not a video")
    (videos / "notes.txt").write_text("ignored")
    assert run("--ckpt", ckpt, "--input-dir", videos, "--out-dir", tmp_path / "out", "--seed", 0) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [r["video"] for r in report["succeeded"]] == [str(videos / "good.mp4")]
    assert [r["video"] for r in report["failed"]] == [str(videos / "broken.mp4")]
    assert report["ignored"] == [str(videos / "notes.txt")]  # was: skipped silently
    assert (tmp_path / "out" / "good.wav").is_file() and (tmp_path / "out" / "good.mp4").is_file()
    assert "1 of 2 videos done, 1 failed, 1 other files ignored" in capsys.readouterr().out


def test_batches_of_files_give_each_file_the_music_it_gets_alone(ckpt, tmp_path, capsys):
    """--batch-size 3: the three 1-s clips are generated together (the 2-s one and a broken file apart),
    with the static cache; each wav is the one `--video` writes for that file with the same seed."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for name, seconds, fps in (("a", 1, 10), ("b", 1, 20), ("c", 2, 10), ("d", 1, 25)):
        make_video(videos / f"{name}.mp4", seconds, fps)
    (videos / "broken.mp4").write_text("not a video")
    assert run("--ckpt", ckpt, "--input-dir", videos, "--out-dir", tmp_path / "out", "--seed", 4, "--batch-size", 3,
               "--static-cache", "true", "--no-video") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert {Path(r["video"]).name: r.get("batch", 1) for r in report["succeeded"]} == {"a.mp4": 3, "b.mp4": 3, "d.mp4": 3, "c.mp4": 1}
    assert [r["video"] for r in report["failed"]] == [str(videos / "broken.mp4")]
    wavs = {name: (tmp_path / "out" / f"{name}.wav").read_bytes() for name in "abcd"}
    assert len(set(wavs.values())) == 4
    for name in "abcd":
        assert run("--ckpt", ckpt, "--video", videos / f"{name}.mp4", "--out", tmp_path / "alone" / name, "--seed", 4,
                   "--no-video") == 0
        assert (tmp_path / "alone" / f"{name}.wav").read_bytes() == wavs[name], name
    capsys.readouterr()
    assert run("--ckpt", ckpt, "--video", videos / "a.mp4", "--out", tmp_path / "x", "--batch-size", 2) == 2
    assert "--batch-size 2" in one_line_error(capsys)
    assert run("--ckpt", ckpt, "--video", videos / "a.mp4", "--out", tmp_path / "x", "--decode-step", "torch_compile") == 2
    assert "decode_step torch_compile needs static_cache" in one_line_error(capsys)


def test_a_late_step_that_fails_keeps_the_music_and_exits_2(ckpt, tmp_path, capsys):
    """A GIF named .mp4 cannot be muxed: its wav stays, one line says why; batch mode lists it as failed."""
    (tmp_path / "videos").mkdir()
    gif = write_gif(tmp_path / "videos" / "animation.mp4", gradient_frames(20, 48, 64))
    make_video(tmp_path / "videos" / "good.mp4", 1, 10)
    assert run("--ckpt", ckpt, "--video", gif, "--out", tmp_path / "one" / "animation") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"vmas generate: {gif}: writing the video with the music: its pictures cannot be copied into .mp4 "
                   "or .mkv as they are ('matroska' format does not support 'gif' codec)")
    assert soundfile.info(str(tmp_path / "one" / "animation.wav")).duration == pytest.approx(2.0, abs=0.05)
    assert not any(p.suffix in (".mp4", ".mkv") for p in (tmp_path / "one").iterdir())

    assert run("--ckpt", ckpt, "--input-dir", tmp_path / "videos", "--out-dir", tmp_path / "out") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    [failed] = report["failed"]
    assert failed["video"] == str(gif) and failed["kept"]["wav"] == str(tmp_path / "out" / "animation.wav")
    assert [r["video"] for r in report["succeeded"]] == [str(tmp_path / "videos" / "good.mp4")]


def test_plot_and_mv_align(ckpt, tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", 2, 10)
    args = ("--ckpt", ckpt, "--video", video, "--out", tmp_path / "clip_music", "--plot", tmp_path / "plot.png")
    assert run(*args, "--plot-spectrogram") == 0
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mv_align = float(capsys.readouterr().out.split("MV-Align ")[1].split()[0])
    assert 0.0 <= mv_align <= 1.0


@pytest.mark.slow
def test_prepare_beats_generate_plot_and_test_agree_on_the_video_beats(ckpt, tmp_path, capsys):
    """A 10-s, 25-fps video with hard cuts at known times and the same settings (configs/tiny.yaml's
    data.beats): the video beats `vmas prepare` stores (and `vmas test` reads for its alignment
    score), those of `vmas beats` and those of `vmas generate --plot` are the same, one per cut."""
    cuts = [1.2, 2.64, 4.4, 5.84, 7.36, 8.8]  # seconds, on the 12.5-fps flow's frames
    video = write_video(tmp_path / "cuts.mp4", cut_frames(cuts, 10.0, 25), 25, audio=sine(10.0), sample_rate=32000)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,split\n{video},test\n")
    assert main(["prepare", "--config", str(TINY_CONFIG), "--separator", "none", "--embedder", "pixel_stats",
                 "--input", str(manifest), "--output", str(tmp_path / "data")]) == 0
    config = ShardConfig.from_configs(TINY_CONFIG)
    batch = next(iter(VMASDataModule(root=str(tmp_path / "data"), sequence=config.sequence, beats=config.beats, batch_size=1,
                                     num_workers=0).loader("test", train=False)))
    stored = (np.flatnonzero(batch["video_beats"][0].numpy()) / config.sequence.token_rate).round(3).tolist()
    capsys.readouterr()
    assert main(["beats", "--video", str(video), "--json", "--config", str(TINY_CONFIG)]) == 0
    reported = json.loads(capsys.readouterr().out)["video_beats"]
    assert run("--ckpt", ckpt, "--video", video, "--out", tmp_path / "music", "--plot", tmp_path / "plot.png",
               "--beats-config", TINY_CONFIG) == 0
    plotted = [float(t) for t in capsys.readouterr().out.split("video beats (6): ")[1].split()]
    assert stored == reported == plotted
    np.testing.assert_allclose(stored, cuts, atol=0.02)


def test_wrong_options_are_one_line_errors(ckpt, tmp_path, capsys):
    assert run("--ckpt", ckpt, "--video", tmp_path / "missing.mp4", "--out", tmp_path / "o") == 2
    assert "missing.mp4: no such file" in one_line_error(capsys)
    assert run("--ckpt", tmp_path / "nope.ckpt", "--video", make_video(tmp_path / "v.mp4", 1, 10), "--out", tmp_path / "o") == 2
    assert "nope.ckpt: checkpoint not found" in one_line_error(capsys)
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    assert run("--ckpt", tmp_path / "text.ckpt", "--video", tmp_path / "v.mp4", "--out", tmp_path / "o") == 2
    assert "text.ckpt: not a readable checkpoint" in one_line_error(capsys)
    assert run("--ckpt", ckpt, "--out", tmp_path / "o") == 2
    assert "--video" in one_line_error(capsys)
    assert run("--ckpt", ckpt, "--video", tmp_path / "v.mp4", "--out", tmp_path / "o", "--top-p", 2) == 2
    assert "top_p" in one_line_error(capsys)
    if not torch.cuda.is_available():
        assert run("--ckpt", ckpt, "--video", tmp_path / "v.mp4", "--out", tmp_path / "o", "--device", "cuda") == 2
        assert "no CUDA device" in one_line_error(capsys)


@pytest.mark.parametrize("unwritable", ["under_a_file", "read_only"])
def test_output_mistakes_are_one_line_before_any_generation(ckpt, tmp_path, capsys, unwritable):
    if unwritable == "read_only" and os.geteuid() == 0:
        pytest.skip("root may write into a read-only folder")
    (tmp_path / "in").mkdir()
    video = make_video(tmp_path / "in" / "clip.mp4", 1, 10)
    if unwritable == "read_only":
        (tmp_path / "locked").mkdir(mode=0o555)
        blocked = tmp_path / "locked"
    else:
        (tmp_path / "file.txt").write_text("a file, not a folder")
        blocked = tmp_path / "file.txt" / "sub"
    gone = tmp_path / "gone.ckpt"  # loading comes after the output checks: the error names the output
    assert run("--ckpt", gone, "--video", video, "--out", blocked / "clip") == 2
    assert f"--out {blocked}: cannot write there" in one_line_error(capsys)
    assert run("--ckpt", gone, "--video", video, "--out", tmp_path / "out", "--plot", blocked / "plot.png") == 2
    assert f"--plot {blocked}: cannot write there" in one_line_error(capsys)
    assert run("--ckpt", gone, "--input-dir", video.parent, "--out-dir", blocked) == 2
    assert f"--out-dir {blocked}: cannot write there" in one_line_error(capsys)


def test_overwriting_the_input_or_a_folder_as_video_is_refused_before_generating(ckpt, tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", 1, 10)
    assert run("--ckpt", ckpt, "--video", video, "--out", tmp_path / "clip") == 2
    assert "clip.mp4: the output would overwrite the input video; choose another --out" in one_line_error(capsys)
    assert run("--ckpt", ckpt, "--input-dir", tmp_path, "--out-dir", tmp_path) == 2
    assert "would overwrite the input video; choose another --out-dir" in one_line_error(capsys)
    assert not (tmp_path / "clip.wav").exists()  # was: checked after generating, leaving the wav
    assert run("--ckpt", ckpt, "--video", tmp_path, "--out", tmp_path / "o") == 2  # was: "no such file"
    assert f"--video {tmp_path}: a folder; for every video in it use --input-dir {tmp_path}" in one_line_error(capsys)


def test_checkpoint_is_read_once_and_nothing_else(tmp_path):
    """Encoder, decoder and codec fine-tuned from local weights: generation reads none of them (on a
    connected machine it downloaded the decoder and codec from their hub ids), and the checkpoint once."""
    from vmas_lightning.models.codecs.encodec import encodec
    from vmas_lightning.models.decoders.musicgen import musicgen
    from vmas_lightning.registry import VIDEO_ENCODERS

    encoder = VIDEO_ENCODERS.build(TINY["encoder"], num_frames=SEQUENCE.num_frames, frame_size=SEQUENCE.frame_size)
    torch.save(encoder.state_dict(), tmp_path / "hiera.pth")
    musicgen(4, 256, 8, size="tiny").lm.save_pretrained(tmp_path / "musicgen")
    encodec(size="tiny").model.save_pretrained(tmp_path / "encodec")
    module = VMASModule(**{**TINY, "encoder": {**TINY["encoder"], "pretrained": str(tmp_path / "hiera.pth")},
                           "decoder": {"name": "musicgen", "pretrained": str(tmp_path / "musicgen")},
                           "codec": {"name": "encodec", "pretrained": str(tmp_path / "encodec")}})
    trainer = L.Trainer(default_root_dir=tmp_path, max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last")])
    trainer.fit(module, train_dataloaders=DataLoader(random_batches(1), batch_size=None))
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    opened = []
    recording = [True]
    sys.addaudithook(lambda event, args: opened.append(str(args[0])) if recording and event == "open" else None)
    model, _, _ = load_for_inference(ckpt)
    recording.clear()
    mine = [path for path in opened if path.startswith(str(tmp_path))]
    assert mine == [str(ckpt)]  # was: the checkpoint 2-3 times, hiera.pth and config.json of both folders
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[f"model.{name}"]), name
    shutil.rmtree(tmp_path / "musicgen")
    shutil.rmtree(tmp_path / "encodec")
    (tmp_path / "hiera.pth").unlink()
    assert load_for_inference(ckpt)[0].decoder.width == 64  # without the weights it started from


def test_checkpoint_with_code_in_it_is_refused_without_running_it(ckpt, tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(tmp_path / "ran"),)

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    checkpoint["extra"] = Payload()
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    video = make_video(tmp_path / "clip.mp4", 1, 10)
    assert run("--ckpt", tmp_path / "evil.ckpt", "--video", video, "--out", tmp_path / "out") == 2
    assert "evil.ckpt: not a readable checkpoint" in one_line_error(capsys)
    assert not (tmp_path / "ran").exists()  # was: torch.load(weights_only=False) ran it


def test_committed_demo_checkpoint_loads_and_an_older_format_is_one_line(tmp_path):
    """checkpoints/demo/model.ckpt is in the current format (its frame sampling recorded); a checkpoint
    that records a setting that is gone (`model.sequence.frames_per_feature`, now the encoder's alone)
    is refused in one line naming it."""
    from helpers import DEMO_CKPT

    model, sequence, _ = load_for_inference(DEMO_CKPT)
    assert model.frames_per_feature == 2 and model.num_features == 48 and sequence.frame_size == 64
    assert sequence.frame_sampling == "average"
    checkpoint = torch.load(DEMO_CKPT, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["sequence"]["frames_per_feature"] = 2
    torch.save(checkpoint, tmp_path / "old.ckpt")
    with pytest.raises(VMASError, match=r"old.ckpt: its model settings: .*'sequence.frames_per_feature'"):
        load_for_inference(tmp_path / "old.ckpt")
