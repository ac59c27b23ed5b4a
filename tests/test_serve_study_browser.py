"""The listening study of `vmas serve` in a real headless Chromium: a 3-pair study answered by two
raters across a server restart, checked against SQLite; Next waits until both clips were played to
their end, and an answer sent without playing them is refused; the admin logs in with the token's
link and out with a button."""
import csv
import io
import urllib.error
import urllib.parse
import urllib.request

import pytest

from serve_browser import (MISSING, TOKEN, answer_study, browser, forget_cookies, media, play_to_the_end,  # noqa: F401
                           server, submit_and_wait, wait_for)

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    bool(MISSING), reason=f"needs {', '.join(MISSING)}: .ci/install-browser.sh installs chromium, chromium-driver and ffmpeg with apt-get")]


@pytest.mark.slow  # 21 s on 2 cores (a server restart)
def test_study_with_two_raters_across_a_restart(server, browser):
    from selenium.webdriver.common.by import By

    from vmas_lightning.serve.stats import rater_results
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
    raters = sorted({a["rater"] for a in stored})  # rater 1 started first
    assert len(stored) == 6 and len(raters) == 2
    for rater, quality in zip(raters, ("left", "right")):  # each rater saw every pair once, in some order
        mine = [a for a in stored if a["rater"] == rater]
        assert sorted(a["pair"] for a in mine) == ["clip0", "clip1", "clip2"] and all(a["seconds"] > 0 for a in mine)
        assert all(a["quality_choice"] == quality and a["quality"] == a[quality] for a in mine)
    expected = {q: {o: sum(a[q] == o for a in stored) for o in ("A", "B", "cannot tell")} for q in ("quality", "sync")}
    assert expected["sync"]["cannot tell"] == 3 and expected["quality"]["cannot tell"] == 0

    browser.get(f"{server.url}/admin?token={TOKEN}")
    browser.get(f"{server.url}/admin/studies/{study}")
    assert browser.find_element(By.ID, "raters").text == "2" and browser.find_element(By.ID, "answers").text == "6"
    by_rater = rater_results(stored)
    for question, counts in expected.items():
        table = browser.find_element(By.ID, f"results-{question}")
        shown = {row.get_attribute("data-outcome"): int(row.find_element(By.CLASS_NAME, "count").text)
                 for row in table.find_elements(By.CSS_SELECTOR, "tr[data-outcome]")}
        assert shown == counts, (question, shown, counts)
        assert "p = " in browser.find_element(By.ID, f"test-{question}").text
        per_rater = browser.find_element(By.ID, f"rater-test-{question}")
        assert [int(per_rater.find_element(By.CLASS_NAME, f"prefer-{side}").text) for side in "ab"] == \
            [by_rater[question]["A"], by_rater[question]["B"]]
    exported = list(csv.DictReader(io.StringIO(server.get(f"/admin/studies/{study}/answers.csv",
                                                          Authorization=f"Bearer {TOKEN}").decode())))
    assert [(int(r["rater"]), r["pair"], r["quality"], r["sync"]) for r in exported] == \
        [(a["rater"], a["pair"], a["quality"], a["sync"]) for a in stored]


def test_next_waits_for_both_clips_and_an_unplayed_answer_is_refused(server, browser):
    from selenium.webdriver.common.by import By

    from vmas_lightning.serve.study import StudyStore

    form = urllib.parse.urlencode({"name": "listening check", "folder_a": "a", "folder_b": "b", "pairs_per_rater": 2})
    created = urllib.request.urlopen(urllib.request.Request(  # as with curl: the token as a bearer header
        f"{server.url}/admin/studies", data=form.encode(), headers={"Authorization": f"Bearer {TOKEN}"}), timeout=30)
    study = int(created.url.rsplit("/", 1)[1])

    def played_at(trial):
        with StudyStore(server.work / "studies.sqlite")._transaction() as db:
            return tuple(db.execute("SELECT left_played_at, right_played_at FROM trials WHERE id = ?", (trial,)).fetchone())

    forget_cookies(browser)
    browser.get(f"{server.url}/study/{study}")
    submit_and_wait(browser, browser.find_element(By.ID, "start"))
    trial = int(browser.find_element(By.NAME, "trial").get_attribute("value"))
    browser.find_element(By.ID, "quality-left").click()
    browser.find_element(By.ID, "sync-right").click()
    assert not browser.find_element(By.ID, "next").is_enabled()
    assert browser.find_element(By.ID, "listening").text == "Play both videos to the end to answer."
    # sent anyway, with this rater's cookie, before playing: refused with one line
    status, text = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(location.pathname, {method: 'POST', body: new FormData(document.getElementById('answer'))})"
        ".then(async (r) => done([r.status, await r.text()]), (e) => done([0, String(e)]));")
    assert status == 400 and "please play both clips to the end before answering (not played yet: left and right)" in text

    play_to_the_end(browser, "left")
    wait_for(browser, lambda d: d.find_element(By.ID, "listening").text == "Play the right video to the end to answer.", 30)
    assert not browser.find_element(By.ID, "next").is_enabled()
    left, right = played_at(trial)
    assert left is not None and right is None
    browser.execute_script("document.getElementById('next').disabled = false")  # forced open: the server still refuses
    submit_and_wait(browser, browser.find_element(By.ID, "next"))
    assert browser.find_element(By.ID, "error").text == \
        "please play both clips to the end before answering (not played yet: right)"

    browser.get(f"{server.url}/study/{study}")  # the same pair, its left clip remembered
    assert int(browser.find_element(By.NAME, "trial").get_attribute("value")) == trial
    assert not browser.find_element(By.ID, "next").is_enabled()
    play_to_the_end(browser, "right")
    wait_for(browser, lambda d: d.find_element(By.ID, "next").is_enabled(), 30)
    assert played_at(trial)[0] == left and played_at(trial)[1] > left
    browser.find_element(By.ID, "quality-left").click()
    browser.find_element(By.ID, "sync-right").click()
    submit_and_wait(browser, browser.find_element(By.ID, "next"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Pair 2 of 2"
    [answer] = StudyStore(server.work / "studies.sqlite").answers(study)
    assert (answer["quality_choice"], answer["sync_choice"]) == ("left", "right")


def test_admin_logs_in_with_the_token_link_and_out_with_a_button(server, browser):
    from selenium.webdriver.common.by import By

    forget_cookies(browser)
    browser.get(f"{server.url}/admin?token={TOKEN}")
    assert browser.current_url == f"{server.url}/admin" and browser.find_element(By.TAG_NAME, "h1").text == "Listening studies"
    [cookie] = [c for c in browser.get_cookies() if c["name"] == "vmas_admin"]
    assert TOKEN not in cookie["value"] and cookie["httpOnly"]
    submit_and_wait(browser, browser.find_element(By.ID, "logout"))
    assert "admin token" in browser.find_element(By.ID, "error").text
    assert not [c for c in browser.get_cookies() if c["name"] == "vmas_admin"]
    with pytest.raises(urllib.error.HTTPError) as refused:  # the old cookie's value is no way in either
        server.get("/admin", Cookie=f"vmas_admin={TOKEN}")
    assert refused.value.code == 403
