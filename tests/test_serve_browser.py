"""`vmas serve` driven in a real headless Chromium (Selenium with the system's chromedriver), the
server started by the test on a free local port: a demo video in, a playing muxed video out; bad
uploads; a dropped video, cancelled from the page; a job that survives kill -9. (The listening
study's browser tests: tests/test_serve_study_browser.py.)"""
import json
import subprocess
from pathlib import Path

import pytest
import soundfile

from media import make_video, sine, truncated_copy, write_audio_only
from serve_browser import MISSING, TOKEN, browser, media, server, visible, wait_for  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)}: .ci/install-browser.sh installs chromium, chromium-driver and ffmpeg with apt-get")]


def upload(driver, server, path, seed=None):
    """Choose a file on the Generate page and wait for its result or its error; returns which showed."""
    from selenium.webdriver.common.by import By

    driver.get(server.url + "/")
    driver.find_element(By.ID, "video").send_keys(str(path))
    if seed is not None:
        driver.find_element(By.ID, "seed").clear()
        driver.find_element(By.ID, "seed").send_keys(str(seed))
    driver.find_element(By.ID, "submit").click()
    return wait_for(driver, lambda d: visible(d, "result") or visible(d, "error"))


def ffprobe(path, *entries) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries", ":".join(entries), "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_generate_page_returns_the_demo_video_with_music(server, browser, demo_data, tmp_path):
    from vmas_lightning.video_io import read_audio, read_video, write_video

    demo = next((demo_data / "videos" / "test").glob("*.mp4"))  # a 10-s held-out demo clip: its first 2.4 s (60 frames at 25 fps)
    clip = read_video(demo)
    frames = clip.frames[: round(2.4 * clip.fps)]
    video = write_video(tmp_path / "demo clip.mp4", frames, clip.fps, read_audio(demo, 32000)[:76800], 32000)

    shown = upload(browser, server, video, seed=3)
    assert shown.get_attribute("id") == "result", visible(browser, "error") and visible(browser, "error").text
    assert browser.find_element("id", "seconds").text == "2.4"
    assert 0.0 <= float(browser.find_element("id", "mv-align").text) <= 1.0
    # the plot loads (the page sets its source when the result shows; the image arrives after)
    wait_for(browser, lambda d: d.execute_script("const p = document.getElementById('plot'); return p.complete && p.naturalWidth > 0"), 30)
    # the muxed video plays in the browser: its duration is known and playback advances
    wait_for(browser, lambda d: d.execute_script("return document.getElementById('result-video').readyState >= 2"), 60)
    assert browser.execute_script("return document.getElementById('result-video').duration") == pytest.approx(2.4, abs=0.1)
    played = browser.execute_async_script(
        "const done = arguments[0], v = document.getElementById('result-video');"
        "v.play().then(() => setTimeout(() => done(v.currentTime), 800), (e) => done(String(e)));")
    assert isinstance(played, float) and played > 0, played

    link = browser.find_element("id", "download-video").get_attribute("href")
    out = tmp_path / "downloaded.mp4"
    out.write_bytes(server.get(link.removeprefix(server.url)))
    info = ffprobe(out, "format=duration", "stream=codec_type,codec_name,nb_read_frames")
    assert float(info["format"]["duration"]) == pytest.approx(2.4, abs=0.05)
    streams = {s["codec_type"]: s for s in info["streams"]}
    assert streams["video"]["codec_name"] == "h264" and int(streams["video"]["nb_read_frames"]) == len(frames)
    assert streams["audio"]["codec_name"] == "aac" and int(streams["audio"]["nb_read_frames"]) > 0
    wav = tmp_path / "music.wav"
    wav.write_bytes(server.get(browser.find_element("id", "download-wav").get_attribute("href").removeprefix(server.url)))
    audio, rate = soundfile.read(wav)
    assert rate == 32000 and len(audio) == 76800


def test_bad_uploads_show_their_message(server, browser, tmp_path):
    files = {
        "notes.txt": ("not a video\n", "notes.txt: not a readable media file"),
        "song.m4a": (write_audio_only(tmp_path / "song.m4a", sine(1.0)), "song.m4a: has no video stream"),
        "broken.mp4": (truncated_copy(make_video(tmp_path / "ok.mp4", 2.0, 24), tmp_path / "broken.mp4", 0.4),
                       "broken.mp4: not a readable media file"),
        "long.mp4": (make_video(tmp_path / "long.mp4", 6.0, 24), "long.mp4: 6.0 s long; this server takes videos up to 5 s"),
        "big.mp4": (b"\0" * (1024 * 1024 + 1), "big.mp4: larger than this server's upload limit of 1 MB"),
    }
    for name, (content, message) in files.items():
        path = tmp_path / name
        if not isinstance(content, Path):
            (path.write_text if isinstance(content, str) else path.write_bytes)(content)
        shown = upload(browser, server, path)
        assert shown.get_attribute("id") == "error" and shown.text.startswith(message), (name, shown.text)
    jobs = server.work / "jobs"
    assert all(len(list(folder.iterdir())) > 1 for folder in jobs.iterdir() if folder.is_dir()), "refused uploads are deleted"


def drop(driver, path):
    """Drop a file on the Generate page's drop zone, as a file manager does (a DataTransfer drop event)."""
    from selenium.webdriver.common.by import By

    carrier = driver.execute_script(
        "const input = document.createElement('input'); input.type = 'file'; input.id = 'carrier';"
        "input.style.display = 'block'; document.body.append(input); return input;")
    carrier.send_keys(str(path))
    driver.execute_script(
        "const transfer = new DataTransfer(); transfer.items.add(document.getElementById('carrier').files[0]);"
        "document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}));")
    assert driver.find_element(By.ID, "chosen").text.startswith(Path(path).name)


@pytest.mark.slow  # 23 s on 2 cores (five jobs and a server restart)
def test_drop_cancel_and_a_kill_9_restart(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    video = make_video(tmp_path / "clip.mp4", 4.0, 24, width=64, height=48)
    before = server.api("/api/jobs?name=earlier.mp4", "POST", video.read_bytes())
    wait_for(browser, lambda d: server.api(f"/api/jobs/{before['id']}")["state"] == "done", 300)

    # dropped, previewed, queued behind another upload, cancelled from the page
    blockers = [server.api(f"/api/jobs?name=blocker{i}.mp4", "POST", video.read_bytes()) for i in range(3)]
    browser.get(server.url + "/")
    drop(browser, video)
    assert browser.execute_script("return !document.getElementById('preview').hidden")
    browser.find_element(By.ID, "submit").click()
    wait_for(browser, lambda d: "Waiting in the queue: place " in d.find_element(By.ID, "status").text, 60)
    browser.find_element(By.ID, "cancel").click()
    assert wait_for(browser, lambda d: visible(d, "error"), 60).text == "clip.mp4: cancelled"
    job = browser.execute_script("return location.hash").removeprefix("#job=")
    assert server.api(f"/api/jobs/{job}")["state"] == "cancelled"
    wait_for(browser, lambda d: server.api(f"/api/jobs/{blockers[-1]['id']}")["state"] == "done", 300)

    # kill -9 while a job runs: the page keeps asking, the job runs again after the restart
    browser.get(server.url + "/")
    drop(browser, video)
    browser.find_element(By.ID, "submit").click()
    job = wait_for(browser, lambda d: d.execute_script("return location.hash").removeprefix("#job="), 60)
    wait_for(browser, lambda d: server.api(f"/api/jobs/{job}")["state"] == "running", 60)
    server.kill()
    wait_for(browser, lambda d: "The server does not answer" in d.find_element(By.ID, "status").text, 60)
    server.start()
    assert wait_for(browser, lambda d: visible(d, "result") or visible(d, "error"), 300).get_attribute("id") == "result"
    assert server.api(f"/api/jobs/{job}")["timings"]["music"] > 0
    # links from before the kill still answer, files included
    assert server.api(f"/api/jobs/{before['id']}")["state"] == "done"
    assert server.get(f"/api/jobs/{before['id']}/wav")[:4] == b"RIFF"
    # the admin token came with --admin-token: the operator has it, the log never shows it
    assert "vmas serve: Generate page" in server.log.read_text() and TOKEN not in server.log.read_text()
