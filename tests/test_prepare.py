"""`vmas prepare`: bad inputs reported, not fatal; visual filter, manifests, kill-and-rerun gives the same clips."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from litdata import StreamingDataset

from helpers import TINY_CONFIG, install_plugin, one_line_error
from media import gradient_frames, sine, truncated_copy, write_audio_only, write_surround_video, write_video
from vmas_lightning.beats import BeatConfig
from vmas_lightning.cli.main import main
from vmas_lightning.data.datamodule import VMASDataModule
from vmas_lightning.data.prepare import collect_inputs, merge_parts, shard_of
from vmas_lightning.data.shards import ShardConfig, annotation_settings, decode_sample
from vmas_lightning.video_io import read_audio
from vmas_lightning.errors import VMASError

FPS, SECONDS = 9.6, 10.6  # one 10-s clip per video and a dropped tail
FAST = ["--config", str(TINY_CONFIG), "--separator", "none", "--embedder", "pixel_stats"]
BAD = {"empty.mp4": "empty file", "text.mp4": "not a readable media file", "truncated.mp4": "",
       "audio_only.mp4": "no video stream", "no_audio.mp4": "no audio track"}
IGNORED = {"notes.txt": "'.txt'", "music.m4a": "'.m4a'"}  # found in the folder, not video file names
NUM_INPUTS = 3 + len(BAD) + len(IGNORED)


def varied_frames(seed: int) -> np.ndarray:
    """A new texture every second: visually varied (low frame similarity)."""
    num_frames = round(SECONDS * FPS)
    cuts = [gradient_frames(10, 64, 64, seed=100 * seed + k) for k in range(num_frames // 10 + 1)]
    return np.concatenate(cuts)[:num_frames]


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("raw")
    write_video(folder / "good_a.mp4", varied_frames(1), FPS, sine(SECONDS, freq=330.0))
    (folder / "nested").mkdir()
    write_video(folder / "nested" / "good_b.mkv", varied_frames(2), FPS, sine(SECONDS, freq=440.0))
    write_video(folder / "static.mp4", np.repeat(gradient_frames(1, 64, 64, seed=7), round(SECONDS * FPS), 0), FPS,
                sine(SECONDS))
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("not a video\n")
    truncated_copy(folder / "good_a.mp4", folder / "truncated.mp4", keep=0.5)
    write_audio_only(folder / "audio_only.mp4", sine(SECONDS))
    write_video(folder / "no_audio.mp4", varied_frames(3), FPS)
    (folder / "notes.txt").write_text("ignored: not a video extension\n")
    write_audio_only(folder / "music.m4a", sine(SECONDS))
    return folder


@pytest.fixture(scope="module")
def prepared(videos, tmp_path_factory) -> Path:
    """One uninterrupted run over the folder."""
    out = tmp_path_factory.mktemp("prepared")
    assert main(["prepare", *FAST, "--input", str(videos), "--output", str(out)]) == 0
    return out


def report(out: Path) -> dict[str, dict]:
    return {Path(line["path"]).name: line for line in map(json.loads, (out / "report.jsonl").read_text().splitlines())}


def clip_ids(split_dir: Path) -> list[str]:
    dataset = StreamingDataset(str(split_dir))
    return sorted(dataset[i]["id"] for i in range(len(dataset)))


def test_bad_inputs_are_reported_and_good_ones_kept(prepared):
    lines = report(prepared)
    assert set(lines) == {"good_a.mp4", "good_b.mkv", "static.mp4", *BAD, *IGNORED}
    for name in ("good_a.mp4", "good_b.mkv"):
        assert lines[name]["status"] == "kept" and lines[name]["clips"] == 1 and lines[name]["dropped_tail"] == 1
        assert lines[name]["similarity"] < 0.7 and abs(lines[name]["duration_s"] - SECONDS) < 0.2
    for name, reason in BAD.items():
        assert lines[name]["status"] == "failed" and name in lines[name]["reason"] and reason in lines[name]["reason"]
    for name, suffix in IGNORED.items():  # was: in no report at all
        assert lines[name]["status"] == "ignored" and name in lines[name]["reason"] and suffix in lines[name]["reason"]
        assert "--input FILE" in lines[name]["reason"]
    static = lines["static.mp4"]
    assert static["status"] == "rejected" and static["similarity"] > 0.99
    assert static["reason"] == f"visual similarity {static['similarity']:.2f} >= 0.7"
    assert len(clip_ids(prepared / "train")) == 2
    assert not (prepared / "val").exists()


def test_prepared_data_loads_in_the_datamodule(prepared):
    config = ShardConfig.from_configs(TINY_CONFIG)
    module = VMASDataModule(root=str(prepared), sequence=config.sequence, beats=config.beats, batch_size=2, num_workers=0)
    batch = next(iter(module.loader("train", train=True)))
    assert batch["video"].shape == (2, 3, 96, 64, 64)
    assert batch["tokens"].shape == (2, 4, 500)
    assert batch["overlap"].shape == (2, 500) and set(batch["overlap"].unique().tolist()) <= {0.0, 1.0}
    assert json.loads((prepared / "train" / "annotation.json").read_text()) == annotation_settings(config)
    VMASDataModule(root=str(prepared), sequence=config.sequence, beats=config.beats, codec=config.codec).check_annotation("train")
    other = VMASDataModule(root=str(prepared), sequence=config.sequence, beats=BeatConfig(min_prominence=0.25), codec=config.codec)
    with pytest.raises(VMASError, match=r"train: made with other settings than the config's "
                                        r"\(data.beats.min_prominence 0.5 in the shards, 0.25 in the config\)"):
        other.check_annotation("train")


def test_rerun_skips_reported_inputs(prepared, videos, capsys):
    assert main(["prepare", *FAST, "--input", str(videos), "--output", str(prepared)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] == NUM_INPUTS and summary["clips"] == 0 and summary["dataset"] == {"train": 2}
    assert len((prepared / "report.jsonl").read_text().splitlines()) == NUM_INPUTS


PREPARE_COMMAND = [sys.executable, "-c", "from vmas_lightning.cli.main import main; raise SystemExit(main())", "prepare"]

GATED_EMBEDDER = """
import time
from pathlib import Path

from vmas_lightning.data.frame_embedders import pixel_stats
from vmas_lightning.registry import FRAME_EMBEDDERS


@FRAME_EMBEDDERS.register("gated_pixel_stats")
def gated_pixel_stats(gate: str):
    \"\"\"pixel_stats; after its first input in a process, each call waits until the file `gate` exists
    (and says so by writing `gate`.waiting).\"\"\"
    embed, calls = pixel_stats(), []

    def gated(frames):
        calls.append(1)
        if len(calls) > 1 and not Path(gate).exists():
            Path(gate + ".waiting").touch()
            while not Path(gate).exists():
                time.sleep(0.02)
        return embed(frames)

    return gated
"""


def plugin_env(folder: Path) -> dict[str, str]:
    """An environment whose Python finds the distributions installed in `folder` (`install_plugin`)."""
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_killed_or_interrupted_run_then_rerun_gives_the_same_clips(prepared, videos, tmp_path, sig):
    # The run cannot finish before the signal: after its first embedded input the embedder waits for
    # the gate (the same frame features as the reference run's pixel_stats, so the same clips).
    gate = tmp_path / "gate"
    env = plugin_env(install_plugin(tmp_path / "plugin", "gated_embedder", GATED_EMBEDDER))
    embedder = json.dumps({"name": "gated_pixel_stats", "gate": str(gate)})
    out = tmp_path / "out"
    command = [*PREPARE_COMMAND, *FAST, "--embedder", embedder, "--input", str(videos), "--output", str(out)]
    # Ctrl-C reaches it as from a terminal even when pytest itself runs with SIGINT ignored, as every
    # background job (`cmd &`) of a non-interactive shell does: an ignored SIGINT is inherited, and
    # Python then installs no KeyboardInterrupt handler.
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300  # spawning the workers can take minutes on a loaded machine
    waiting = tmp_path / "gate.waiting"

    def first_input_reported() -> bool:
        lines = report(out).values() if (out / "report.jsonl").exists() else ()
        return any(line["status"] in ("kept", "rejected") for line in lines)

    # Stop it while a worker waits at the gate and the input before is in the report.
    while time.monotonic() < deadline and process.poll() is None and not (waiting.exists() and first_input_reported()):
        time.sleep(0.05)
    reached = process.poll() is None and waiting.exists() and first_input_reported()
    os.killpg(process.pid, sig)  # the whole process group, as Ctrl-C in a terminal
    try:
        stderr = process.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:  # show where it hangs: faulthandler dumps every thread on SIGABRT
        os.killpg(process.pid, signal.SIGABRT)
        pytest.fail(f"the run did not stop within 60 s of the signal:\n{process.communicate(timeout=30)[1][-8000:]}")
    assert reached, f"the run did not reach the gate with one input reported: {stderr}"
    if sig == signal.SIGINT:  # was: a traceback from the main process and one from the worker
        assert process.returncode == 130 and "Traceback" not in stderr, stderr
        errors = [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("vmas: error:")]
        assert errors == [f"vmas: error: interrupted; every input finished so far is saved in {out / 'report.jsonl'}: "
                          "run the same command again to go on"]
    assert 0 < len(report(out)) < NUM_INPUTS
    gate.touch()
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr  # the rerun curates bad files too: reported, not raised
    assert clip_ids(out / "train") == clip_ids(prepared / "train")
    assert len(report(out)) == NUM_INPUTS


def test_manifest_split_and_metadata(videos, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,youtube_id,split,genre,caption\n{videos / 'good_a.mp4'},abc123,val,rock,\"slow piano, in C\"\n"
                        f"{videos / 'empty.mp4'},zzz,,pop,\n")
    out = tmp_path / "out"
    assert main(["prepare", *FAST, "--input", str(manifest), "--output", str(out)]) == 0
    lines = report(out)
    assert lines["good_a.mp4"]["split"] == "val" and lines["empty.mp4"]["split"] == "train"
    dataset = StreamingDataset(str(out / "val"))
    assert len(dataset) == 1 and dataset[0]["id"] == "abc123-0000"
    meta = json.loads(dataset[0]["meta"])
    assert meta["genre"] == "rock" and meta["youtube_id"] == "abc123" and meta["split"] == "val"
    assert dataset[0]["caption"] == "slow piano, in C" and "caption" not in meta  # the caption column: the clip's caption
    assert not (out / "train").exists()


def test_shards_partition_inputs_and_parts_merge(videos, tmp_path):
    items = collect_inputs([str(videos / "*.mp4"), str(videos)])
    assert len(items) == len({item.path for item in items}) == NUM_INPUTS  # glob and folder overlap: no duplicates
    assert sorted(Path(item.path).name for item in items if item.ignored) == sorted(IGNORED)
    explicit = collect_inputs([str(videos), str(videos / "music.m4a")])  # named explicitly: tried after all
    assert not next(item for item in explicit if item.path.endswith("music.m4a")).ignored
    shards = [shard_of(items, 3, i) for i in range(3)]
    assert sorted(item.path for shard in shards for item in shard) == sorted(item.path for item in items)
    assert merge_parts([], tmp_path / "train") == 0 and not (tmp_path / "train").exists()


def test_bad_option_and_missing_input_are_one_line_errors(tmp_path, capsys):
    assert main(["prepare", *FAST, "--input", str(tmp_path / "nope.mp4"), "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"vmas: error: --input {tmp_path / 'nope.mp4'}: no such file, folder or pattern"


def test_merge_joins_array_job_shards(prepared, videos, tmp_path):
    shutil.copytree(prepared, tmp_path / "shard-00000-of-00002")
    bad = [str(videos / name) for name in BAD]
    assert main(["prepare", *FAST, "--input", *bad, "--output", str(tmp_path), "--num-shards", "2", "--shard-index", "1"]) == 0
    assert len(report(tmp_path / "shard-00001-of-00002")) == 2  # every other input
    assert main(["prepare", "merge", "--output", str(tmp_path)]) == 0
    assert set(report(tmp_path)) == set(report(prepared))  # the reports joined (shard 1's inputs are also in shard 0)
    assert clip_ids(tmp_path / "train") == clip_ids(prepared / "train")
    assert (tmp_path / "train" / "annotation.json").read_text() == (prepared / "train" / "annotation.json").read_text()


def test_an_input_past_the_time_limit_fails_and_the_rest_continue(videos, tmp_path):
    inputs = [str(videos / "good_a.mp4"), str(videos / "empty.mp4"), str(videos / "text.mp4")]
    assert main(["prepare", *FAST, "--input", *inputs, "--output", str(tmp_path), "--timeout-s", "0.3"]) == 0
    lines = report(tmp_path)
    assert lines["good_a.mp4"]["status"] == "failed" and lines["good_a.mp4"]["reason"].endswith("timed out after 0.3 s")
    assert lines["empty.mp4"]["reason"].endswith("empty file") and "not a readable media file" in lines["text.mp4"]["reason"]


def test_stereo_and_5_1_soundtracks_are_stored_at_their_level_unclipped(tmp_path):
    tone = sine(SECONDS, 48000, 80.0) / 0.3 * 0.9  # every channel (LFE too: 80 Hz) at 0.9 of full scale, RMS 0.64
    (tmp_path / "in").mkdir()
    for channels in (2, 6):
        write_surround_video(tmp_path / "in" / f"{channels}ch.mp4", varied_frames(channels), FPS, np.tile(tone, (channels, 1)))
    assert main(["prepare", *FAST, "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]) == 0
    dataset = StreamingDataset(str(tmp_path / "out" / "train"))
    assert len(dataset) == 2
    for index in range(2):
        sample = decode_sample(dataset[index], load_frames=False)
        mono = read_audio(sample["source"], 32000)[: len(sample["audio"])]
        assert np.sqrt(np.mean(mono**2)) == pytest.approx(0.64, abs=0.03)  # down-mix without gain (was +3 dB and more)
        gain = sample["meta"].get("audio_gain", 1.0)
        assert (gain < 1.0) == (np.abs(mono).max() > 1.0)  # AAC's 5.1 coding noise peaks past 1.0: scaled, recorded
        np.testing.assert_allclose(sample["audio"], mono * gain, atol=1.0 / 2**15 + 1e-6)  # scaled, never clipped


@pytest.mark.slow  # 27 s on 2 cores
def test_same_shards_with_one_or_two_workers_and_plugin_options(videos, tmp_path):
    """Demucs' time shift came from each worker's global RNG and the torch thread count from the
    worker count: tokens depended on --workers. Plugins take options on the command line."""
    from test_curation_plugins import save_tiny_demucs

    save_tiny_demucs(tmp_path / "htdemucs")
    args = ["prepare", "--config", str(TINY_CONFIG), "--separator", f"{{name: htdemucs, repo: {tmp_path / 'htdemucs'}}}",
            "--embedder", "{name: pixel_stats, thumbnail: 8}", "--input", str(videos / "good_a.mp4"),
            str(videos / "nested" / "good_b.mkv")]
    stored = {}
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        assert main([*args, "--output", str(out), "--workers", str(workers)]) == 0
        dataset = StreamingDataset(str(out / "train"))
        stored[workers] = sorted((dataset[i]["id"], dataset[i]["tokens"].tobytes(), bytes(dataset[i]["audio"]))
                                 for i in range(len(dataset)))
    assert len(stored[1]) == 2 and stored[1] == stored[2]


def test_other_settings_are_refused_and_failed_inputs_retried_on_request(videos, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    broken, short = tmp_path / "in" / "clé.mp4", tmp_path / "in" / "short.mp4"
    truncated_copy(videos / "good_a.mp4", broken, keep=0.5)  # a download cut short
    write_video(short, np.repeat(gradient_frames(1, 64, 64), round(5.3 * FPS), 0), FPS, sine(5.3))
    out = tmp_path / "données"
    assert main(["prepare", *FAST, "--input", str(broken), str(short), "--output", str(out)]) == 0
    assert "données" in capsys.readouterr().out  # was: "donn\\u00e9es"
    assert report(out)["clé.mp4"]["status"] == "failed"
    assert report(out)["short.mp4"]["reason"] == "shorter than one clip (5.3 s < 10 s)"  # not its similarity
    before = (out / "report.jsonl").read_bytes()
    more = ["prepare", *FAST, "--input", str(videos / "good_a.mp4"), "--output", str(out)]
    assert main([*more, "--clip-seconds", "5"]) == 2  # was: 5-s clips mixed with 10-s ones
    assert "(--clip-seconds 10.0 there, 5.0 now); add inputs with the same settings" in one_line_error(capsys)
    assert main([*more, "--similarity-threshold", "0.5"]) == 2
    assert "--similarity-threshold 0.7 there, 0.5 now" in one_line_error(capsys)
    assert (out / "report.jsonl").read_bytes() == before and not (out / "train").exists()

    settings = json.loads((out / "settings.json").read_text())  # as older versions wrote it: settings that
    settings.update({"data.beats.lam": 1.0, "model.sequence.frames_per_feature": 2})  # no longer decide the clips
    (out / "settings.json").write_text(json.dumps(settings))
    shutil.copyfile(videos / "good_a.mp4", broken)  # the download is complete now
    assert main(["prepare", *FAST, "--input", str(broken), "--output", str(out)]) == 0
    assert report(out)["clé.mp4"]["status"] == "failed"  # reported inputs are skipped...
    assert main(["prepare", *FAST, "--input", str(broken), "--output", str(out), "--retry-failed"]) == 0
    lines = (out / "report.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and report(out)["clé.mp4"]["status"] == "kept"  # ...unless asked: one line per input
    assert len(clip_ids(out / "train")) == 1


def test_a_second_run_on_the_same_output_is_refused(videos, tmp_path, capsys):
    """Two runs on one output used to run at once, and the report listed every input twice."""
    command = [*PREPARE_COMMAND, *FAST, "--input", str(videos / "good_a.mp4"), str(videos / "empty.mp4"),
               "--output", str(tmp_path)]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    lock = tmp_path / ".lock"
    while first.poll() is None and time.monotonic() < deadline and not (lock.exists() and lock.read_text()):
        time.sleep(0.02)
    assert first.poll() is None, "the first run ended before the second started"
    assert main(command[len(PREPARE_COMMAND) - 1 :]) == 2
    assert f"another vmas prepare (pid {first.pid}) is writing there" in one_line_error(capsys)
    assert first.wait(timeout=120) == 0
    assert main(command[len(PREPARE_COMMAND) - 1 :]) == 0  # after it: nothing left to do
    assert len((tmp_path / "report.jsonl").read_text().splitlines()) == 2


def test_missing_separator_weights_stop_before_anything_is_written(videos, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as on an offline machine
    out = tmp_path / "out"
    assert main(["prepare", "--config", str(TINY_CONFIG), "--input", str(videos / "good_a.mp4"), "--output", str(out)]) == 2
    assert "hf download adefossez/HTDemucs" in one_line_error(capsys)  # the default separator's weights
    assert not out.exists()  # was: an empty output folder


def test_prepare_flags_take_their_defaults_from_prepare_options():
    """One place for the curation defaults: `vmas prepare`'s flags read `PrepareOptions`."""
    from vmas_lightning.cli.prepare import build_parser
    from vmas_lightning.data.prepare import PrepareOptions

    from vmas_lightning.registry import FRAME_EMBEDDERS, SOURCE_SEPARATORS

    flags, options = build_parser().get_defaults(), PrepareOptions()
    assert (flags.similarity_threshold, flags.hop_seconds, flags.silence_rms, flags.split, flags.require_audio) == (
        options.similarity_threshold, options.hop_s, options.silence_rms, options.split, options.require_audio)
    # plugin flags are expanded to every option of the plugin
    assert flags.separator == SOURCE_SEPARATORS.expand(options.separator) == {
        "name": "htdemucs", "model": "htdemucs", "repo": None, "shifts": 1}
    assert flags.embedder == FRAME_EMBEDDERS.expand(options.embedder) == {"name": "pixel_stats", "thumbnail": 16}
