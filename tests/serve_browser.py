"""What the real-browser tests of `vmas serve` share: `Server` (`vmas serve` in a subprocess), the
`media`, `server` and `browser` fixtures (import them into a test module to use them), and helpers
that wait for pages, forget cookies and answer a study as a rater."""
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from media import make_video

TOKEN = "test-admin-token"
NEEDED = {"chromium": shutil.which("chromium") or shutil.which("chromium-browser"),
          "chromedriver": shutil.which("chromedriver"), "ffprobe": shutil.which("ffprobe")}
try:
    import selenium  # noqa: F401
except ImportError:
    NEEDED["selenium (pip, the dev extra)"] = None
MISSING = [name for name, found in NEEDED.items() if not found]


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
                        "--max-upload-mb", "1", "--max-video-s", "5", "--max-per-client", "4", "--device", "cpu"]
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

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.process.kill()
        self.process.wait(timeout=60)

    def api(self, path: str, method: str = "GET", data: bytes = None) -> dict:
        """JSON of the API at `path`."""
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)

    def get(self, path: str, **headers: str) -> bytes:
        """The body of `path`, asked with `headers` (e.g. Authorization=...)."""
        with urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers), timeout=30) as response:
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


def forget_cookies(browser):
    """Every cookie of every path (WebDriver's delete_all_cookies sees only the current page's)."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})


def play_to_the_end(browser, *sides):
    """Play the study page's videos on `sides` (left, right) at once, until each has ended."""
    browser.execute_script("for (const id of arguments) document.getElementById(id).play()", *sides)
    wait_for(browser, lambda d: d.execute_script(
        "return Array.from(arguments).every(id => document.getElementById(id).ended)", *sides), 60)


def answer_study(browser, server, study, quality, sync):
    """Start the study as a new rater (forget the cookies first) and answer its 3 pairs, playing both clips of each."""
    from selenium.webdriver.common.by import By

    browser.get(f"{server.url}/study/{study}")
    submit_and_wait(browser, browser.find_element(By.ID, "start"))
    for index in range(1, 4):
        assert browser.find_element(By.TAG_NAME, "h1").text == f"Pair {index} of 3"
        wait_for(browser, lambda d: d.execute_script(
            "return ['left', 'right'].every(id => document.getElementById(id).readyState >= 1)"), 60)
        assert not browser.find_element(By.ID, "next").is_enabled()
        play_to_the_end(browser, "left", "right")
        wait_for(browser, lambda d: d.find_element(By.ID, "next").is_enabled(), 30)
        browser.find_element(By.ID, f"quality-{quality}").click()
        browser.find_element(By.ID, f"sync-{sync}").click()
        submit_and_wait(browser, browser.find_element(By.ID, "next"))
    assert "You answered all 3 pairs" in wait_for(browser, lambda d: visible(d, "done"), 60).text
