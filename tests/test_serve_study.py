"""The listening study without a browser: the store's listening check, lazy raters and balancing on
shown trials, an old studies.sqlite migrated in place, per-rater statistics, and the study and admin
routes of the real app served by uvicorn in this process (cookies, one-line refusals, admin token as
`Authorization: Bearer`, HMAC login cookie, logout)."""
import random
import re
import sqlite3
from contextlib import closing
from types import SimpleNamespace

import pytest
import requests
from served import serve_in_thread

from vmas_lightning.errors import VMASError
from vmas_lightning.serve.stats import rater_preference, rater_results
from vmas_lightning.serve.study import SCHEMA, StudyStore
from vmas_lightning.serve.study_routes import ADMIN_COOKIE, admin_session

TOKEN = "in-process-admin-token"


@pytest.fixture
def media(tmp_path):
    for system in ("a", "b"):
        (tmp_path / "media" / system).mkdir(parents=True)
        for name in ("clip0", "clip1", "clip2"):
            (tmp_path / "media" / system / f"{name}.mp4").write_bytes(b"stand-in: the store never reads the videos")
    return tmp_path / "media"


def show_and_play(store, rater, sides=("left", "right")) -> int:
    """Show the rater's next trial and report the clips on `sides` played; returns the trial."""
    trial = store.next_trial(rater)["trial"]
    for side in sides:
        store.played(rater, trial, side)
    return trial


def test_an_answer_needs_both_clips_of_a_shown_trial_played(media, tmp_path):
    store = StudyStore(tmp_path / "studies.sqlite", media)
    study = store.create_study("s", "a", "b", pairs_per_rater=2)
    me, other = (store.rater(study, store.new_rater(study)) for _ in range(2))
    with store._transaction() as db:
        [unshown] = [row["id"] for row in db.execute("SELECT id FROM trials WHERE rater_id = ? AND position = 1", (me,))]
    with pytest.raises(VMASError, match="not shown to you yet"):
        store.played(me, unshown, "left")

    trial = store.next_trial(me)
    assert (trial["left_played"], trial["right_played"]) == (False, False)
    with pytest.raises(VMASError, match=r"^please play both clips to the end before answering \(not played yet: left and right\)$"):
        store.answer(me, trial["trial"], "left", "left")
    store.played(me, trial["trial"], "left")
    with pytest.raises(VMASError, match=r"not played yet: right\)$"):
        store.answer(me, trial["trial"], "left", "left")
    with pytest.raises(VMASError, match="not one of yours"):
        store.played(other, trial["trial"], "right")
    with pytest.raises(VMASError, match="no side 'middle'"):
        store.played(me, trial["trial"], "middle")
    with store._transaction() as db:
        first = db.execute("SELECT left_played_at FROM trials WHERE id = ?", (trial["trial"],)).fetchone()[0]
    store.played(me, trial["trial"], "left")  # played again: the first end is kept
    store.played(me, trial["trial"], "right")
    assert store.next_trial(me) == {"trial": trial["trial"], "done": 0, "total": 2, "left_played": True, "right_played": True}
    store.answer(me, trial["trial"], "right", "cannot_tell")
    with store._transaction() as db:
        row = db.execute("SELECT * FROM trials WHERE id = ?", (trial["trial"],)).fetchone()
    assert row["left_played_at"] == first and row["shown_at"] <= first <= row["right_played_at"] <= row["answered_at"]
    with pytest.raises(VMASError, match="already answered"):
        store.played(me, trial["trial"], "left")
    assert [a["quality_choice"] for a in store.answers(study)] == ["right"]


def test_balancing_counts_shown_trials_and_raters_count_once_they_answered(media, tmp_path):
    store = StudyStore(tmp_path / "studies.sqlite", media)
    study = store.create_study("s", "a", "b", pairs_per_rater=1)

    def pair_of(rater):
        with store._transaction() as db:
            return db.execute("SELECT pair_id FROM trials WHERE rater_id = ?", (rater,)).fetchone()[0]

    rng = random.Random(0)
    first = store.rater(study, store.new_rater(study, rng))
    show_and_play(store, first)
    # raters that never see their pair (abandoned starts, scripts) take the two other pairs twice each
    idle = [store.rater(study, store.new_rater(study, rng)) for _ in range(4)]
    assert pair_of(first) not in {pair_of(rater) for rater in idle}
    assert sorted([pair_of(rater) for rater in idle].count(p) for p in {pair_of(r) for r in idle}) == [2, 2]
    # the next rater gets a pair nobody was shown, not the one shown once (the least assigned, 1 < 2)
    second = store.rater(study, store.new_rater(study, rng))
    assert pair_of(second) != pair_of(first)

    assert store.study(study)["raters"] == 0  # six raters, none answered
    store.answer(first, store.next_trial(first)["trial"], "left", "left")
    assert (store.study(study)["raters"], store.study(study)["answers"]) == (1, 1)


def test_a_study_file_of_the_first_schema_is_migrated_in_place(media, tmp_path):
    path = tmp_path / "studies.sqlite"
    with closing(sqlite3.connect(path)) as db:  # as the first release left it: one answer, one pair shown
        db.executescript(SCHEMA)
        assert "left_played_at" not in {row[1] for row in db.execute("PRAGMA table_info(trials)")}
        a, b = media / "a" / "clip0.mp4", media / "b" / "clip0.mp4"
        db.executescript(f"""
            INSERT INTO studies VALUES (1, 'old', 'A', 'B', 'a', 'b', 2, 1.0);
            INSERT INTO pairs VALUES (1, 1, 'clip0', '{a}', '{b}'), (2, 1, 'clip1', '{a}', '{b}');
            INSERT INTO raters VALUES (1, 1, 'old-token', 1.0);
            INSERT INTO trials (rater_id, pair_id, position, left_system, shown_at, answered_at, quality, sync)
                VALUES (1, 1, 0, 'B', 10.0, 12.5, 'left', 'right'), (1, 2, 1, 'A', 13.0, NULL, NULL, NULL);""")
        db.commit()
    for _ in range(2):  # opened by the new server, twice (a restart)
        store = StudyStore(path, media)
    [old] = store.answers(1)
    assert (old["pair"], old["quality"], old["sync"], old["seconds"]) == ("clip0", "B", "A", 2.5)
    rater = store.rater(1, "old-token")
    assert store.next_trial(rater)["left_played"] is False
    store.answer(rater, show_and_play(store, rater), "cannot_tell", "left")
    assert [a["sync"] for a in store.answers(1)] == ["A", "A"] and store.study(1)["raters"] == 1


def test_rater_preference_known_answers():
    result = rater_preference({1: ["A", "A", "B"], 2: ["A", "B"], 3: ["B", "B", "cannot tell"], 4: ["cannot tell"],
                               5: ["A"], 6: ["A", "A"]})
    assert result["shares"] == pytest.approx({1: 2 / 3, 2: 0.5, 3: 0.0, 5: 1.0, 6: 1.0})
    assert (result["raters"], result["A"], result["B"], result["tied"]) == (6, 3, 1, 2)
    assert result["p_value"] == pytest.approx(0.625)  # 2 * P(X >= 3), X ~ Bin(4, 1/2) = 2 * 5/16
    assert rater_preference({r: ["A"] * 5 for r in range(10)})["p_value"] == pytest.approx(2 / 1024)
    assert rater_preference({1: ["A", "B"], 2: ["cannot tell"]})["p_value"] is None
    # 12 answers of two raters: 10 of them for A, yet one rater for each side
    answers = [{"rater": 1, "quality": "A", "sync": "B"}] * 10 + [{"rater": 2, "quality": "B", "sync": "B"}] * 2
    by_rater = rater_results(answers)
    assert (by_rater["quality"]["A"], by_rater["quality"]["B"], by_rater["quality"]["p_value"]) == (1, 1, 1.0)
    assert (by_rater["sync"]["B"], by_rater["sync"]["p_value"]) == (2, 0.5)


@pytest.fixture
def site(media, tmp_path):
    """The real app (study and admin routes; no model: the Generate page is not used) on a free port."""
    from vmas_lightning.serve.app import create_app
    from vmas_lightning.serve.settings import ServeSettings

    store = StudyStore(tmp_path / "work" / "studies.sqlite", media)
    settings = ServeSettings(ckpt="never-loaded.ckpt", media_root=str(media), admin_token=TOKEN)
    app = create_app(settings, SimpleNamespace(start=lambda: None, stop=lambda: None), store)
    with serve_in_thread(app) as url:
        yield SimpleNamespace(url=url, store=store)


def error_line(response) -> str:
    """The one-line message of an error page."""
    return re.search(r'<p class="error" id="error">(.*?)</p>', response.text, re.S).group(1)


def shown_trial(response) -> int:
    return int(re.search(r'name="trial" value="(\d+)"', response.text).group(1))


def test_visits_without_a_cookie_make_no_rater_and_answers_need_both_clips_played(site):
    study = site.store.create_study("s", "a", "b", pairs_per_rater=2)
    for _ in range(30):  # link previews, scripts, a rater's first look: the instructions, no rater, no trial
        page = requests.get(f"{site.url}/study/{study}")
        assert page.status_code == 200 and 'id="start"' in page.text and "Set-Cookie" not in page.headers
    with site.store._transaction() as db:
        assert db.execute("SELECT COUNT(*) FROM raters").fetchone()[0] == 0
    answer = requests.post(f"{site.url}/study/{study}", data={"trial": 1, "quality": "left", "sync": "left"},
                           allow_redirects=False)
    assert answer.status_code == 400 and error_line(answer).startswith("your rater cookie is missing")

    rater = requests.Session()
    assert rater.post(f"{site.url}/study/{study}/start").url == f"{site.url}/study/{study}"
    page = rater.post(f"{site.url}/study/{study}/start")  # a second Start in the same browser: the same rater
    assert "Pair 1 of 2" in page.text and re.search(r'id="next" disabled', page.text)
    trial = shown_trial(page)
    with site.store._transaction() as db:
        assert db.execute("SELECT COUNT(*) FROM raters").fetchone()[0] == 1
    choice = {"trial": trial, "quality": "left", "sync": "right"}
    refused = rater.post(f"{site.url}/study/{study}", data=choice, allow_redirects=False)
    assert refused.status_code == 400
    assert error_line(refused) == "please play both clips to the end before answering (not played yet: left and right)"
    assert rater.post(f"{site.url}/study/{study}/played/{trial}/left").status_code == 204
    assert rater.post(f"{site.url}/study/{study}/played/{trial + 100}/left").status_code == 400  # not this rater's
    assert requests.post(f"{site.url}/study/{study}/played/{trial}/right").status_code == 400  # no cookie
    reloaded = rater.get(f"{site.url}/study/{study}").text  # a reload remembers the left one
    assert "const played = {left: true, right: false};" in reloaded and 'id="next" disabled' in reloaded
    assert rater.post(f"{site.url}/study/{study}", data=choice, allow_redirects=False).status_code == 400
    assert rater.post(f"{site.url}/study/{study}/played/{trial}/right").status_code == 204
    page = rater.get(f"{site.url}/study/{study}")
    assert shown_trial(page) == trial and 'id="next" disabled' not in page.text and 'id="next"' in page.text
    accepted = rater.post(f"{site.url}/study/{study}", data=choice, allow_redirects=False)
    assert accepted.status_code == 303 and accepted.headers["location"] == f"/study/{study}"
    assert "Pair 2 of 2" in rater.get(f"{site.url}/study/{study}").text
    assert [(a["quality_choice"], a["sync_choice"]) for a in site.store.answers(study)] == [("left", "right")]


def test_admin_and_results_count_the_same_raters_and_show_the_per_rater_test(site):
    admin = {"Authorization": f"Bearer {TOKEN}"}
    study = site.store.create_study("s", "a", "b", pairs_per_rater=3)
    for quality in ("left", "left", None):  # two raters answer every pair, one only starts
        rater = requests.Session()
        rater.post(f"{site.url}/study/{study}/start")
        rater_id = site.store.rater(study, rater.cookies[f"vmas_rater_{study}"])
        for _ in range(3 if quality else 0):
            site.store.answer(rater_id, show_and_play(site.store, rater_id), quality, "cannot_tell")
    answers = site.store.answers(study)

    listed = requests.get(f"{site.url}/admin", headers=admin).text
    [(raters, count)] = re.findall(r"<td>(\d+)</td><td>(\d+)</td>\s*<td><a href=\"/study/", listed)
    results = requests.get(f"{site.url}/admin/studies/{study}", headers=admin).text
    assert (raters, count) == ("2", "6")
    assert re.search(r'<span id="raters">(\d+)</span>', results).group(1) == raters
    assert re.search(r'<span id="answers">(\d+)</span>', results).group(1) == count
    by_rater = rater_results(answers)["quality"]
    shown = re.search(r'id="rater-test-quality">.*?<span class="prefer-a">(\d+)</span>.*?<span class="prefer-b">(\d+)</span>'
                      r'.*?p = ([0-9.e-]+)', results, re.S)
    assert (int(shown.group(1)), int(shown.group(2))) == (by_rater["A"], by_rater["B"])
    assert by_rater["A"] + by_rater["B"] == 2 and float(shown.group(3)) == pytest.approx(by_rater["p_value"], rel=1e-3)
    sync = re.search(r'id="rater-test-sync">(.*?)</p>', results, re.S).group(1)
    assert "No rater prefers A or B yet." in sync and ">0</span> raters chose A" in sync


def test_admin_token_as_bearer_or_as_an_hmac_login_cookie_until_logout(site):
    study = site.store.create_study("s", "a", "b")
    pages = ["/admin", f"/admin/studies/{study}", f"/admin/studies/{study}/answers.csv"]
    for path in pages:
        assert requests.get(site.url + path).status_code == 403
        assert requests.get(site.url + path, headers={"Authorization": "Bearer wrong-token"}).status_code == 403
        assert requests.get(site.url + path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert requests.get(site.url + path, cookies={ADMIN_COOKIE: TOKEN}).status_code == 403  # the raw token is no cookie
    csv = requests.get(f"{site.url}/admin/studies/{study}/answers.csv", headers={"Authorization": f"Bearer {TOKEN}"})
    assert csv.text.splitlines()[0].startswith("rater,pair,position")
    created = requests.post(f"{site.url}/admin/studies", headers={"Authorization": f"Bearer {TOKEN}"},
                            data={"name": "by curl", "folder_a": "a", "folder_b": "b"}, allow_redirects=False)
    assert created.status_code == 303 and site.store.study(int(created.headers["location"].rsplit("/", 1)[1]))["name"] == "by curl"

    assert requests.get(f"{site.url}/admin?token=wrong-token").status_code == 403
    browser = requests.Session()
    login = browser.get(f"{site.url}/admin?token={TOKEN}", allow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/admin"
    cookie = browser.cookies[ADMIN_COOKIE]
    assert TOKEN not in login.headers["set-cookie"] and cookie == admin_session(TOKEN) != admin_session("another-token")
    assert "HttpOnly" in login.headers["set-cookie"] and "SameSite=strict" in login.headers["set-cookie"]
    for path in pages:
        assert browser.get(site.url + path).status_code == 200
    assert 'action="/admin/logout"' in browser.get(f"{site.url}/admin").text
    out = browser.post(f"{site.url}/admin/logout", allow_redirects=False)
    assert out.status_code == 303 and ADMIN_COOKIE not in browser.cookies
    assert browser.get(f"{site.url}/admin").status_code == 403


def test_numbers_beyond_sqlite_are_a_422_line_not_a_500(site):
    huge = "12345678901234567890"
    study = site.store.create_study("s", "a", "b", pairs_per_rater=1)
    session = requests.Session()
    session.post(f"{site.url}/study/{study}/start")
    for response, field in ((session.post(f"{site.url}/study/{study}", data={"trial": huge, "quality": "left", "sync": "left"}), "trial"),
                            (session.post(f"{site.url}/study/{study}/played/{huge}/left"), "trial"),
                            (session.get(f"{site.url}/study/{huge}"), "study_id"),
                            (requests.post(f"{site.url}/admin/studies", headers={"Authorization": f"Bearer {TOKEN}"},
                                           data={"name": "n", "folder_a": "a", "folder_b": "b", "pairs_per_rater": huge}),
                             "pairs_per_rater")):
        assert response.status_code == 422, (field, response.status_code, response.text[:300])
        assert error_line(response).startswith(f"{field}: Input should be less than"), error_line(response)
