"""`vmas serve` without a browser: the generation queue on a real tiny checkpoint, the study store's
balanced assignment and answer rules, the results' statistics, and the command's one-line errors."""
import asyncio
import dataclasses
import json
import re
import socket
import time

import cv2
import numpy as np
import pytest
import requests

from helpers import one_line_error
from media import gradient_frames, make_video, sine, write_audio_only, write_gif
from served import serve_in_thread
from vmas_lightning.cli.main import main
from vmas_lightning.errors import VMASError
from vmas_lightning.serve.jobs import Busy, InvalidSettings, JobQueue, check_sampling, display_name
from vmas_lightning.serve.stats import preference, study_results
from vmas_lightning.serve.study import StudyStore


async def chunks(data: bytes, size: int = 1000):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def receive(queue: JobQueue, name: str, data: bytes, declared=None):
    return asyncio.run(queue.receive(name, chunks(data), declared))


@pytest.fixture(scope="module")
def generation(tiny_ckpt):
    from vmas_lightning.generation.pipeline import Generation, GenerationOptions

    return Generation(GenerationOptions(ckpt=str(tiny_ckpt), device="cpu"))


def run_queue(queue: JobQueue, jobs: list[str], timeout: float = 300.0) -> None:
    """Start the queue's worker, wait until `jobs` ended, stop it."""
    queue.start()
    try:
        deadline = time.time() + timeout
        while any(queue.status(job)["state"] in ("queued", "running") for job in jobs) and time.time() < deadline:
            time.sleep(0.1)
    finally:
        queue.stop()


def test_queue_runs_jobs_in_order_with_places_progress_and_cleanup(generation, tmp_path):
    queue = JobQueue(generation, tmp_path / "jobs", max_bytes=200_000, max_video_s=3.0, keep_s=60.0)
    video = make_video(tmp_path / "clip.mp4", 2.5, 24, width=64, height=48)
    config = generation.config
    uploads = [receive(queue, "../../etc/clip.mp4", video.read_bytes()) for _ in range(2)]
    jobs = [queue.submit("../../etc/clip.mp4", upload, dataclasses.replace(config, seed=seed), keep_original_audio=False)
            for upload, seed in zip(uploads, (0, 1))]
    # uploads live under fixed names in their own folder, whatever the file was called
    assert uploads == [tmp_path / "jobs" / job / "upload.mp4" for job in jobs]
    assert [queue.status(job)["place"] for job in jobs] == [1, 2]  # the worker is not started yet
    assert queue.status(jobs[0])["name"] == "clip.mp4"
    run_queue(queue, jobs)
    for job in jobs:
        status = queue.status(job)
        assert status["state"] == "done" and status["progress"] == 1.0 and status["problems"] == [], status
        assert status["result"]["seconds"] == 2.5 and 0.0 <= status["result"]["mv_align"] <= 1.0
        assert status["result"]["files"] == ["plot", "video", "wav"]
        assert list(status["timings"]) == ["read", "music", "wav", "video", "plot", "mv_align"]
        assert status["result"]["generation_s"] == status["timings"]["music"]
        path, download = queue.file(job, "video")
        assert path == tmp_path / "jobs" / job / "music.mp4" and download == "clip_music.mp4"
    assert queue.file(jobs[0], "../upload.mp4") is None
    # files of ended jobs go once they are older than keep_s, with the job
    ended = [row["ended"] for row in queue._execute("SELECT ended FROM jobs")]
    assert queue.cleanup(now=min(ended) + 59) == []
    assert sorted(queue.cleanup(now=max(ended) + 61)) == sorted(jobs)
    assert [p.name for p in (tmp_path / "jobs").iterdir()] == ["jobs.sqlite"] and queue.status(jobs[0]) is None


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
    picture = tmp_path / "picture.png"
    cv2.imwrite(str(picture), np.zeros((32, 32, 3), np.uint8))
    cases["picture.png"] = (picture.read_bytes(), "picture.png: a video needs at least 2 frames, this file has 1 (a picture?)")
    cases["one.mp4"] = (make_video(tmp_path / "one.mp4", 1 / 24, 24).read_bytes(), "one.mp4: a video needs at least 2 frames")
    for name, (data, message) in list(cases.items())[-2:]:
        with pytest.raises(VMASError) as err:
            queue.submit(name, receive(queue, name, data), generation.config, False)
        assert str(err.value).startswith(message), str(err.value)
    limit = "big.mp4: larger than this server's upload limit of 0.0953674 MB"
    for declared in (None, 200_000):  # counted as it arrives, or refused from the declared length
        with pytest.raises(VMASError, match=limit):
            receive(queue, "big.mp4", bytes(200_000), declared)


    async def broken_off(data: bytes):  # the client goes away mid-upload (starlette raises ClientDisconnect)
        yield data[:1000]
        raise OSError("client disconnected")

    with pytest.raises(VMASError, match="^clip.mp4: the upload broke off after 1000 bytes$"):
        asyncio.run(queue.receive("clip.mp4", broken_off(bytes(5000)), None))
    assert [p.name for p in (tmp_path / "jobs").iterdir()] == ["jobs.sqlite"], "refused uploads leave nothing behind"
    assert display_name("..\\..\\a/b/../c<>.mp4") == "c__.mp4" and display_name("") == "video"


def test_jobs_and_their_links_survive_a_restart_and_an_interrupted_job_runs_again_once(generation, tmp_path):
    video = make_video(tmp_path / "clip.mp4", 2.0, 24).read_bytes()

    def new_queue() -> JobQueue:  # a (re)started server: the same folder, nothing in memory
        return JobQueue(generation, tmp_path / "jobs", max_bytes=10**6, max_video_s=3.0, keep_s=600.0)

    first = new_queue()
    done = first.submit("done.mp4", receive(first, "done.mp4", video), generation.config, False)
    run_queue(first, [done])
    killed, waiting = (first.submit(name, receive(first, name, video), generation.config, False) for name in ("a.mp4", "b.mp4"))
    assert new_queue()._next()["id"] == killed  # a server's worker took it, then the process died (kill -9)

    second = new_queue()
    assert second.status(done)["state"] == "done" and second.file(done, "wav")[0].is_file()
    assert second.status(killed)["state"] == "running"
    second.recover()
    assert second.status(killed)["state"] == "queued" and second.status(killed)["place"] == 1
    assert second.status(killed)["stage"] == "queued again after a server restart"
    assert second._next()["id"] == killed  # killed again while running

    third = new_queue()
    third.recover()  # a second interruption: not queued a third time
    status = third.status(killed)
    assert status["state"] == "interrupted" and "restarted 2 times" in status["error"], status
    run_queue(third, [waiting])
    assert third.status(waiting)["state"] == "done" and third.status(waiting)["progress"] == 1.0


def test_queue_limits_cancel_and_time_budget(generation, tmp_path):
    queue = JobQueue(generation, tmp_path / "jobs", max_bytes=10**6, max_video_s=3.0, keep_s=600.0,
                     max_queued=3, max_per_client=2)
    video = make_video(tmp_path / "clip.mp4", 2.0, 24).read_bytes()

    def submit(client: str) -> str:
        return queue.submit("clip.mp4", receive_from(queue, client, video), generation.config, False, client)

    mine = [submit("10.0.0.1"), submit("10.0.0.1")]
    with pytest.raises(Busy, match="^you have 2 videos in the queue already; wait for one or cancel it$"):
        submit("10.0.0.1")
    theirs = submit("10.0.0.2")
    with pytest.raises(Busy, match=r"^the queue is full \(3 videos\)"):
        submit("10.0.0.3")
    assert len(list((tmp_path / "jobs").iterdir())) == 4, "refused uploads leave no folder"

    assert queue.status(theirs)["place"] == 3
    assert queue.cancel(mine[1])["state"] == "cancelled"
    assert queue.status(theirs)["place"] == 2 and queue.cancel(mine[1])["state"] == "cancelled"
    submit("10.0.0.3")  # room again
    assert queue.cancel("no-such-job") is None

    # a running job stops at its next step
    queue.start()
    try:
        deadline = time.time() + 120
        while queue.status(mine[0])["state"] != "running" and time.time() < deadline:
            time.sleep(0.01)
        queue.cancel(mine[0])
        while queue.status(mine[0])["state"] == "running" and time.time() < deadline:
            time.sleep(0.05)
    finally:
        queue.stop()
    status = queue.status(mine[0])
    assert status["state"] == "cancelled" and status["error"] == "clip.mp4: cancelled" and status["result"]["files"] == []

    # a job gets budget_s: music not ready by then fails it, in one line
    short = JobQueue(generation, tmp_path / "short", max_bytes=10**6, max_video_s=3.0, keep_s=600.0, budget_s=1e-3)
    job = short.submit("clip.mp4", receive(short, "clip.mp4", video), generation.config, False)
    run_queue(short, [job])
    assert short.status(job)["state"] == "failed"
    assert short.status(job)["error"] == "clip.mp4: stopped after 0.001 s, this server's limit per job"


def receive_from(queue: JobQueue, client: str, data: bytes):
    return asyncio.run(queue.receive("clip.mp4", chunks(data), None, client))


def test_a_late_step_that_fails_keeps_the_music(generation, tmp_path, monkeypatch):
    """A GIF named .mp4: the music is made, the muxed copy cannot be; the wav, plot and scores stay.
    The plot is titled with the user's file name, not the server's copy's."""
    from vmas_lightning.beats import plot

    titles = []
    original = plot.plot_beats
    monkeypatch.setattr(plot, "plot_beats", lambda *args, title, **kwargs: titles.append(title) or original(*args, title=title, **kwargs))

    gif = write_gif(tmp_path / "animation.gif", gradient_frames(20, 48, 64))
    queue = JobQueue(generation, tmp_path / "jobs", max_bytes=10**6, max_video_s=3.0, keep_s=600.0)
    job = queue.submit("animation.mp4", receive(queue, "animation.mp4", gif.read_bytes()), generation.config, False)
    run_queue(queue, [job])
    status = queue.status(job)
    assert status["state"] == "done" and status["result"]["files"] == ["plot", "wav"], status
    [problem] = status["problems"]
    assert problem == ("animation.mp4: writing the video with the music: its pictures cannot be copied into .mp4 or .mkv "
                       "as they are ('matroska' format does not support 'gif' codec)"), problem
    assert queue.file(job, "wav")[0].stat().st_size > 0 and 0.0 <= status["result"]["mv_align"] <= 1.0
    assert titles == ["animation.mp4"]


def test_settings_are_checked_before_the_upload_is_read(generation, tmp_path):
    bad = {"cfg_scale=nan": "cfg_scale must be a finite number below 1e6, got nan",
           "temperature=inf": "temperature must be a finite number below 1e6, got inf",
           "cfg_scale=1e308": "cfg_scale must be a finite number below 1e6, got 1e+308",
           "seed=12345678901234567890": "seed must be in 0..2**63-1, got 12345678901234567890",
           "top_k=99999999999": "top_k must be in 0..2**31, got 99999999999",
           "top_k=1e23": "top_k: Input should be a valid integer",
           "temperature=-1": "generation: temperature must be >= 0, got -1.0"}
    config = generation.config
    assert check_sampling(config) == config
    for changes, message in (({"cfg_scale": float("nan")}, "cfg_scale must be a finite number"),
                             ({"seed": -1, "top_k": 2**40}, "seed must be in 0..2**63-1, got -1; top_k must be in 0..2**31")):
        with pytest.raises(InvalidSettings, match=re.escape(message)):
            check_sampling(config, **changes)

    from vmas_lightning.serve.app import create_app
    from vmas_lightning.serve.settings import ServeSettings
    from vmas_lightning.serve.study import StudyStore

    queue = JobQueue(generation, tmp_path / "jobs", max_bytes=10**6, max_video_s=3.0, keep_s=600.0)
    app = create_app(ServeSettings(ckpt="loaded.ckpt", admin_token="x" * 8), queue, StudyStore(tmp_path / "s.sqlite"))
    video = make_video(tmp_path / "clip.mp4", 2.0, 24).read_bytes()
    with serve_in_thread(app) as url:
        for query, message in bad.items():
            response = requests.post(f"{url}/api/jobs?name=clip.mp4&{query}", data=video, timeout=60)
            assert response.status_code == 422 and message in response.json()["error"], (query, response.text)
            assert "\n" not in response.json()["error"]
        assert [p.name for p in (tmp_path / "jobs").iterdir()] == ["jobs.sqlite"], "nothing was received"
        job = requests.post(f"{url}/api/jobs?name=clip.mp4&seed=3", data=video, timeout=60).json()
        deadline = time.time() + 120
        while (status := requests.get(f"{url}/api/jobs/{job['id']}", timeout=30).json())["state"] != "done":
            assert time.time() < deadline and status["state"] in ("queued", "running"), status
            time.sleep(0.2)
        assert json.loads(queue._job(job["id"])["config"])["seed"] == 3
        assert requests.delete(f"{url}/api/jobs/{job['id']}", timeout=30).json()["state"] == "done"  # ended: left as it is
        assert requests.get(f"{url}/api/jobs/{job['id']}/wav", timeout=30).content[:4] == b"RIFF"
        assert requests.delete(f"{url}/api/jobs/nothing", timeout=30).status_code == 404


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
    store.played(first, trial["trial"], "left")
    store.played(first, trial["trial"], "right")
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


def test_mv_align_is_not_scored_above_the_largest_side_and_every_stage_is_timed(generation, tmp_path):
    """MV-Align's flow reads every frame at its native size (a 4K upload held the worker for minutes):
    above `score_max_side` the score is skipped with one line; the rest is made and timed."""
    video = make_video(tmp_path / "wide.mp4", 1.0, 12, width=64, height=48)
    result = generation(video, tmp_path / "out", tmp_path / "plot.png", score_max_side=48)
    assert "mv_align" not in result and result["plot"] == str(tmp_path / "plot.png")
    assert result["problems"] == ["scoring MV-Align: skipped: 64x48 is larger than the 48 px a side scored here "
                                  "(the score's optical flow reads every frame at its native size)"]
    assert list(result["timings"]) == ["read", "music", "wav", "video", "plot", "mv_align"]
    assert 0.0 <= generation(video, tmp_path / "out", tmp_path / "plot.png", score_max_side=64)["mv_align"] <= 1.0


def test_an_unknown_generation_setting_is_one_line():
    from vmas_lightning.errors import VMASError
    from vmas_lightning.generation.pipeline import Generation, GenerationOptions

    with pytest.raises(VMASError, match="generation has no setting topk; known: .*top_k"):
        Generation(GenerationOptions(ckpt="unused.ckpt", generation={"topk": 5}))
