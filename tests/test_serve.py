"""`vmas serve` without a browser: the generation queue on a real tiny checkpoint, the study store's
balanced assignment and answer rules, the results' statistics, and the command's one-line errors."""
import asyncio
import dataclasses
import socket
import time

import pytest

from conftest import one_line_error
from media import make_video, sine, write_audio_only
from vmas_lightning.cli.main import main
from vmas_lightning.errors import VMASError
from vmas_lightning.serve.jobs import JobQueue, display_name
from vmas_lightning.serve.stats import preference, study_results
from vmas_lightning.serve.study import StudyStore


async def chunks(data: bytes, size: int = 1000):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def receive(queue: JobQueue, name: str, data: bytes, declared=None):
    return asyncio.run(queue.receive(name, chunks(data), declared))


@pytest.fixture(scope="module")
def generation(tiny_ckpt):
    from vmas_lightning.cli.generate import build_parser
    from vmas_lightning.generation.pipeline import Generation

    return Generation(build_parser().parse_args(["--ckpt", str(tiny_ckpt), "--device", "cpu"]))


def test_queue_runs_jobs_in_order_with_places_progress_and_cleanup(generation, tmp_path):
    queue = JobQueue(generation, tmp_path / "jobs", max_bytes=200_000, max_video_s=3.0, keep_s=60.0)
    video = make_video(tmp_path / "clip.mp4", 2.5, 24, width=64, height=48)
    config = generation.config
    jobs = [queue.submit("../../etc/clip.mp4", receive(queue, "../../etc/clip.mp4", video.read_bytes()),
                         dataclasses.replace(config, seed=seed), keep_original_audio=False) for seed in (0, 1)]
    # uploads live under fixed names in their own folder, whatever the file was called
    assert [job.upload for job in jobs] == [tmp_path / "jobs" / job.id / "upload.mp4" for job in jobs]
    assert [queue.status(job.id)["place"] for job in jobs] == [1, 2]  # the worker is not started yet
    assert queue.status(jobs[0].id)["name"] == "clip.mp4"
    queue.start()
    try:
        deadline = time.time() + 300
        while any(queue.status(job.id)["state"] in ("queued", "running") for job in jobs) and time.time() < deadline:
            time.sleep(0.2)
    finally:
        queue.stop()
    for job in jobs:
        status = queue.status(job.id)
        assert status["state"] == "done" and status["progress"] == 1.0, status
        assert status["result"]["seconds"] == 2.5 and 0.0 <= status["result"]["mv_align"] <= 1.0
        assert status["result"]["files"] == ["plot", "video_out", "wav"]
        path, download = queue.file(job.id, "video")
        assert path == tmp_path / "jobs" / job.id / "music.mp4" and download == "clip_music.mp4"
    assert queue.file(jobs[0].id, "../upload.mp4") is None
    # files of ended jobs go once they are older than keep_s, with the job
    ended = [job.ended for job in jobs]
    assert queue.cleanup(now=min(ended) + 59) == []
    assert sorted(queue.cleanup(now=max(ended) + 61)) == sorted(job.id for job in jobs)
    assert not any((tmp_path / "jobs").iterdir()) and queue.status(jobs[0].id) is None


def test_bad_uploads_are_refused_with_the_users_file_name(generation, tmp_path):
    queue = JobQueue(generation, tmp_path / "jobs", max_bytes=100_000, max_video_s=3.0, keep_s=60.0)
    cases = {
        "notes.txt": (b"not a video\n", "notes.txt: not a readable media file"),
        "song.m4a": (write_audio_only(tmp_path / "song.m4a", sine(1.0)).read_bytes(), "song.m4a: has no video stream"),
        "long.mp4": (make_video(tmp_path / "long.mp4", 4.0, 24).read_bytes(), "long.mp4: 4.0 s long; this server takes videos up to 3 s"),
        "empty.mp4": (b"", "empty.mp4: empty file"),
    }
    for name, (data, message) in cases.items():
        with pytest.raises(VMASError) as err:
            queue.submit(name, receive(queue, name, data), generation.config, False)
        assert str(err.value).startswith(message), str(err.value)
    limit = "big.mp4: larger than this server's upload limit of 0.0953674 MB"
    for declared in (None, 200_000):  # counted as it arrives, or refused from the declared length
        with pytest.raises(VMASError, match=limit):
            receive(queue, "big.mp4", bytes(200_000), declared)
    assert not any((tmp_path / "jobs").iterdir()), "refused uploads leave nothing behind"
    assert display_name("..\\..\\a/b/../c<>.mp4") == "c__.mp4" and display_name("") == "video"


@pytest.fixture
def media(tmp_path):
    for system in ("a", "b"):
        for name in ("clip0", "clip1", "clip2"):
            (tmp_path / "media" / system).mkdir(parents=True, exist_ok=True)
            (tmp_path / "media" / system / f"{name}.mp4").write_bytes(b"stand-in: the store never reads the videos")
    (tmp_path / "media" / "b" / "only_in_b.mp4").write_bytes(b"")
    (tmp_path / "outside").mkdir()
    return tmp_path / "media"


def test_study_assigns_balanced_pairs_and_keeps_answers_private(media, tmp_path):
    import random

    store = StudyStore(tmp_path / "work" / "studies.sqlite", media)
    study = store.create_study("ckpt 1 vs 2", "a", "b", "step 1000", "step 2000", pairs_per_rater=2)
    assert store.study(study)["pairs"] == 3  # only_in_b has no partner
    rng = random.Random(0)
    raters = [store.rater(study, store.new_rater(study, rng)) for _ in range(6)]
    with store._transaction() as db:
        rows = db.execute("SELECT pair_id, left_system, rater_id FROM trials").fetchall()
    assert len(rows) == 12 and all(sum(r["rater_id"] == rater for r in rows) == 2 for rater in raters)
    for pair in {r["pair_id"] for r in rows}:  # every pair shown 4 times, A on the left twice
        shown = [r["left_system"] for r in rows if r["pair_id"] == pair]
        assert len(shown) == 4 and shown.count("A") == 2, shown

    first, second = raters[:2]
    trial = store.next_trial(first)
    assert trial["done"] == 0 and trial["total"] == 2
    with pytest.raises(VMASError, match="not one of yours"):
        store.answer(second, trial["trial"], "left", "right")
    with pytest.raises(VMASError, match="please answer both questions"):
        store.answer(first, trial["trial"], "left", "")
    assert store.trial_video(second, trial["trial"], "left") is None
    assert store.trial_video(first, trial["trial"], "../../secret") is None
    store.answer(first, trial["trial"], "left", "cannot_tell")
    with pytest.raises(VMASError, match="already answered"):
        store.answer(first, trial["trial"], "right", "right")
    assert store.next_trial(first)["done"] == 1

    reopened = StudyStore(tmp_path / "work" / "studies.sqlite", media)  # a restarted server
    [answer] = reopened.answers(study)
    left = answer["left"]
    assert answer["quality_choice"] == "left" and answer["quality"] == left and answer["sync"] == "cannot tell"
    assert reopened.trial_video(first, trial["trial"], "left").parent.name == left.lower()
    assert reopened.rater(study, "not-a-token") is None

    for folders, message in ((("../outside", "b"), "outside the server's media root"), (("a", "a"), "the same folder"),
                             (("a", "missing"), "no such folder")):
        with pytest.raises(VMASError, match=message):
            store.create_study("bad", *folders)


def test_preference_shares_intervals_and_sign_test_known_answers():
    result = preference(["A"] * 8 + ["B"] * 2 + ["cannot tell"] * 2)
    assert result["total"] == 12 and result["rows"]["A"]["count"] == 8
    assert result["rows"]["A"]["share"] == pytest.approx(2 / 3)
    # Wilson interval of 8/12: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.96
    assert (result["rows"]["A"]["low"], result["rows"]["A"]["high"]) == pytest.approx((0.3906, 0.8619), abs=1e-4)
    assert result["p_value"] == pytest.approx(0.109375)  # 2 * P(X >= 8), X ~ Bin(10, 1/2) = 2 * 56/1024
    assert preference(["cannot tell"] * 3)["p_value"] is None
    assert preference([])["total"] == 0
    answers = [{"quality": "A", "sync": "B"}] * 3
    assert study_results(answers)["sync"]["rows"]["B"]["count"] == 3


def test_serve_command_errors_are_one_line(tiny_ckpt, tmp_path, capsys):
    assert main(["serve", "--ckpt", str(tiny_ckpt), "--port", "0"]) == 2
    assert "--port must be in 1..65535" in one_line_error(capsys)
    assert main(["serve", "--ckpt", str(tiny_ckpt), "--max-upload-mb", "0", "--media-root", str(tmp_path / "no")]) == 2
    err = one_line_error(capsys)
    assert "--max-upload-mb must be > 0" in err and "--media-root" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--ckpt", str(tiny_ckpt), "--port", str(port), "--work-dir", str(tmp_path / "w")]) == 2
        assert f"--port {port}: cannot listen there" in one_line_error(capsys)
    assert main(["serve", "--ckpt", str(tmp_path / "none.ckpt"), "--port", str(port), "--work-dir", str(tmp_path / "w")]) == 2
    assert "checkpoint not found" in one_line_error(capsys)
