"""`vmas serve` driven in a real headless Chromium (Selenium with the system's chromedriver), the
server started by the test on a free local port: a demo video in, a playing muxed video out; bad
uploads; a 3-pair study answered by two raters across a server restart, checked against SQLite."""
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile

from media import make_video, sine, truncated_copy, write_audio_only

TOKEN = "test-admin-token"
NEEDED = {"chromium": shutil.which("chromium") or shutil.which("chromium-browser"),
          "chromedriver": shutil.which("chromedriver"), "ffprobe": shutil.which("ffprobe")}
try:
    import selenium  # noqa: F401
except ImportError:
    NEEDED["selenium (pip, the dev extra)"] = None
MISSING = [name for name, found in NEEDED.items() if not found]
pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)}: .ci/install-browser.sh installs chromium, chromium-driver and ffmpeg with apt-get")]


class Server:
    """`vmas serve` in a subprocess on a free port; `restart()` keeps its work folder."""

    def __init__(self, ckpt: Path, work: Path, media_root: Path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.work, self.log = work, work.parent / "server.log"
        self.command = [sys.executable, "-m", "vmas_lightning.cli.main", "serve", "--ckpt", str(ckpt), "--port", str(self.port),
                        "--work-dir", str(work), "--media-root", str(media_root), "--admin-token", TOKEN,
                        "--max-upload-mb", "1", "--max-video-s", "5", "--device", "cpu"]
        self.process = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=self.log.open("a"), stderr=subprocess.STDOUT)
        deadline = time.time() + 300
        while time.time() < deadline:
            assert self.process.poll() is None, f"vmas serve exited: {self.log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=5) as response:
                    if json.load(response) == {"ok": True}:
                        return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"vmas serve did not answer in 300 s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)

    def restart(self) -> None:
        self.stop()
        self.start()

    def get(self, path: str, cookie: str = "") -> bytes:
        with urllib.request.urlopen(urllib.request.Request(self.url + path, headers={"Cookie": cookie}), timeout=30) as response:
            return response.read()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Two systems' videos for the same 3 sources (a study), made with different music."""
    root = tmp_path_factory.mktemp("media")
    for system, freq in (("a", 440.0), ("b", 660.0)):
        (root / system).mkdir()
        for index in range(3):
            make_video(root / system / f"clip{index}.mp4", 1.0, 12, audio_rate=32000)
    return root


@pytest.fixture(scope="module")
def server(tiny_ckpt, media, tmp_path_factory):
    server = Server(tiny_ckpt, tmp_path_factory.mktemp("serve") / "work", media)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = NEEDED["chromium"]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1200,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(NEEDED["chromedriver"]))
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=300):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def submit_and_wait(driver, button, timeout=60):
    """Click a form's submit `button` and wait until the page it posts to has replaced this one and loaded.

    The wait marks the current document and polls the browser for a new one: asking the old button whether it is
    stale (selenium's staleness_of) races with its removal, and chromedriver then raises an inspector error
    ("Node with given id does not belong to the document") instead of StaleElementReferenceException.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.documentElement.dataset.leaving = 'yes'")
    button.click()
    WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && !document.documentElement.dataset.leaving"))


def visible(driver, element_id):
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, element_id)
    return element if element.is_displayed() else False


def upload(driver, server, path, seed=None):
    """Drop a file on the Generate page and wait for its result or its error; returns which showed."""
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
    from vmas_lightning.data.video_io import read_audio, read_video, write_video

    demo = next((demo_data / "videos" / "test").glob("*.mp4"))  # a 10-s held-out demo clip: its first 2.4 s (60 frames at 25 fps)
    clip = read_video(demo)
    frames = clip.frames[: round(2.4 * clip.fps)]
    video = write_video(tmp_path / "demo clip.mp4", frames, clip.fps, read_audio(demo, 32000)[:76800], 32000)

    shown = upload(browser, server, video, seed=3)
    assert shown.get_attribute("id") == "result", visible(browser, "error") and visible(browser, "error").text
    assert browser.find_element("id", "seconds").text == "2.4"
    assert 0.0 <= float(browser.find_element("id", "mv-align").text) <= 1.0
    assert browser.execute_script("return document.getElementById('plot').naturalWidth") > 0
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
    assert not jobs.exists() or all(len(list(folder.iterdir())) > 1 for folder in jobs.iterdir()), "refused uploads are deleted"


def forget_cookies(browser):
    """Every cookie of every path (WebDriver's delete_all_cookies sees only the current page's)."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})


def answer_study(browser, server, study, quality, sync):
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/study/{study}")
    for index in range(1, 4):
        assert browser.find_element(By.TAG_NAME, "h1").text == f"Pair {index} of 3"
        wait_for(browser, lambda d: d.execute_script(
            "return ['left', 'right'].every(id => document.getElementById(id).readyState >= 1)"), 60)
        browser.find_element(By.ID, f"quality-{quality}").click()
        browser.find_element(By.ID, f"sync-{sync}").click()
        submit_and_wait(browser, browser.find_element(By.ID, "next"))
    assert "You answered all 3 pairs" in wait_for(browser, lambda d: visible(d, "done"), 60).text


def test_study_with_two_raters_across_a_restart(server, browser):
    from selenium.webdriver.common.by import By

    from vmas_lightning.serve.study import StudyStore

    forget_cookies(browser)
    browser.get(server.url + "/admin")
    assert "admin token" in browser.find_element(By.ID, "error").text
    browser.get(f"{server.url}/admin?token={TOKEN}")
    for field, value in (("name", "A vs B"), ("folder_a", "a"), ("folder_b", "b"), ("label_a", "checkpoint 1"),
                         ("label_b", "checkpoint 2")):
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.ID, "pairs_per_rater").clear()
    browser.find_element(By.ID, "pairs_per_rater").send_keys("3")
    submit_and_wait(browser, browser.find_element(By.ID, "create"))
    study = int(wait_for(browser, lambda d: "/admin/studies/" in d.current_url and d.current_url).rsplit("/", 1)[1])

    forget_cookies(browser)  # rater 1
    answer_study(browser, server, study, "left", "cannot_tell")
    browser.get(f"{server.url}/admin/studies/{study}")  # a rater cannot see the results
    assert "admin token" in browser.find_element(By.ID, "error").text
    server.restart()
    forget_cookies(browser)  # rater 2, after the restart
    answer_study(browser, server, study, "right", "left")

    stored = StudyStore(server.work / "studies.sqlite").answers(study)
    assert len(stored) == 6 and sorted({a["rater"] for a in stored}) == [1, 2]
    for rater, quality in ((1, "left"), (2, "right")):  # each rater saw every pair once, in some order
        mine = [a for a in stored if a["rater"] == rater]
        assert sorted(a["pair"] for a in mine) == ["clip0", "clip1", "clip2"] and all(a["seconds"] > 0 for a in mine)
        assert all(a["quality_choice"] == quality and a["quality"] == a[quality] for a in mine)
    expected = {q: {o: sum(a[q] == o for a in stored) for o in ("A", "B", "cannot tell")} for q in ("quality", "sync")}
    assert expected["sync"]["cannot tell"] == 3 and expected["quality"]["cannot tell"] == 0

    browser.get(f"{server.url}/admin?token={TOKEN}")
    browser.get(f"{server.url}/admin/studies/{study}")
    assert browser.find_element(By.ID, "raters").text == "2" and browser.find_element(By.ID, "answers").text == "6"
    for question, counts in expected.items():
        table = browser.find_element(By.ID, f"results-{question}")
        shown = {row.get_attribute("data-outcome"): int(row.find_element(By.CLASS_NAME, "count").text)
                 for row in table.find_elements(By.CSS_SELECTOR, "tr[data-outcome]")}
        assert shown == counts, (question, shown, counts)
        assert "p = " in browser.find_element(By.ID, f"test-{question}").text
    exported = list(csv.DictReader(io.StringIO(server.get(f"/admin/studies/{study}/answers.csv",
                                                          f"vmas_admin={TOKEN}").decode())))
    assert [(int(r["rater"]), r["pair"], r["quality"], r["sync"]) for r in exported] == \
        [(a["rater"], a["pair"], a["quality"], a["sync"]) for a in stored]
