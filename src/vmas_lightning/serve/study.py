"""The listening study's store: studies, pairs, raters and every answer in one SQLite file.

A study pairs the videos of two folders by file stem (system A and system B made music for the
same source video). Each rater gets `pairs_per_rater` pairs, chosen among those shown least so far
(then assigned least, ties at random), in random order, each with the system shown on the left
chosen so that, per pair, A and B are on the left equally often (counted the same way). A trial
counts as shown once its page was shown. An answer is taken only after the page reported both of
its clips played to the end; it names the side the rater chose (`left`, `right`, `cannot_tell`).
Raters are counted once they answered. Every write is its own committed transaction (WAL,
synchronous=FULL), so nothing answered is lost when the server stops.
"""
from __future__ import annotations

import random
import secrets
import sqlite3
import time
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Iterator, Optional

from vmas_lightning.video_io import VIDEO_SUFFIXES
from vmas_lightning.errors import VMASError
from vmas_lightning.serve.database import connect

QUESTIONS = {
    "quality": "Which music sounds better (music quality)?",
    "sync": "Which music fits its video better (music-video synchronisation: beats on the cuts and motion)?",
}
CHOICES = {"left": "Left", "right": "Right", "cannot_tell": "Cannot tell"}
SIDES = ("left", "right")
SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (id INTEGER PRIMARY KEY, name TEXT NOT NULL, label_a TEXT NOT NULL,
    label_b TEXT NOT NULL, folder_a TEXT NOT NULL, folder_b TEXT NOT NULL, pairs_per_rater INTEGER NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL REFERENCES studies(id),
    name TEXT NOT NULL, video_a TEXT NOT NULL, video_b TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS raters (id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL REFERENCES studies(id),
    token TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS trials (id INTEGER PRIMARY KEY, rater_id INTEGER NOT NULL REFERENCES raters(id),
    pair_id INTEGER NOT NULL REFERENCES pairs(id), position INTEGER NOT NULL,
    left_system TEXT NOT NULL CHECK (left_system IN ('A', 'B')), shown_at REAL, answered_at REAL,
    quality TEXT CHECK (quality IN ('left', 'right', 'cannot_tell')),
    sync TEXT CHECK (sync IN ('left', 'right', 'cannot_tell')));
"""
# Columns added since the first release: added to every file that lacks them when it is opened.
ADDED_COLUMNS = {"trials": {"left_played_at": "REAL", "right_played_at": "REAL"}}


def preferred_system(choice: str, left_system: str) -> str:
    """The system a rater preferred (`A`, `B`) or `cannot tell`, from the side chosen."""
    if choice == "cannot_tell":
        return "cannot tell"
    return left_system if choice == "left" else {"A": "B", "B": "A"}[left_system]


class StudyStore:
    """All studies of one server, in `path` (created with its tables when missing)."""

    def __init__(self, path: str | Path, media_root: str | Path = "."):
        self.path = Path(path)
        self.media_root = Path(media_root).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db:
            db.executescript(SCHEMA)
        with self._transaction() as db:
            for table, columns in ADDED_COLUMNS.items():
                present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
                for column, kind in columns.items():
                    if column not in present:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def _folder(self, folder: str, field: str) -> Path:
        """A study folder named by the admin, inside the media root."""
        path = (self.media_root / folder).resolve()
        if not path.is_relative_to(self.media_root):
            raise VMASError(f"{field} {folder}: outside the server's media root {self.media_root}")
        if not path.is_dir():
            raise VMASError(f"{field} {folder}: no such folder under {self.media_root}")
        return path

    def create_study(self, name: str, folder_a: str, folder_b: str, label_a: str = "A", label_b: str = "B",
                     pairs_per_rater: int = 10) -> int:
        """A new study from two folders of videos paired by file stem; returns its id."""
        if not name.strip():
            raise VMASError("a study needs a name")
        if pairs_per_rater < 1:
            raise VMASError(f"pairs per rater must be >= 1, got {pairs_per_rater}")
        folders = [self._folder(folder_a, "folder A"), self._folder(folder_b, "folder B")]
        if folders[0] == folders[1]:
            raise VMASError("folder A and folder B are the same folder")
        videos = [{p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES}
                  for folder in folders]
        common = sorted(videos[0].keys() & videos[1].keys())
        if not common:
            raise VMASError(f"no video has the same file name (without suffix) in {folder_a} and {folder_b}")
        with self._transaction() as db:
            study = db.execute("INSERT INTO studies (name, label_a, label_b, folder_a, folder_b, pairs_per_rater, created) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)", (name.strip(), label_a.strip() or "A", label_b.strip() or "B",
                                                                folder_a, folder_b, pairs_per_rater, time.time())).lastrowid
            db.executemany("INSERT INTO pairs (study_id, name, video_a, video_b) VALUES (?, ?, ?, ?)",
                           [(study, stem, str(videos[0][stem]), str(videos[1][stem])) for stem in common])
        return study

    def studies(self) -> list[dict]:
        """Every study with its pair, rater (with at least one answer) and answer counts."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT s.*, (SELECT COUNT(*) FROM pairs p WHERE p.study_id = s.id) AS pairs, "
                "(SELECT COUNT(DISTINCT r.id) FROM raters r JOIN trials t ON t.rater_id = r.id "
                " WHERE r.study_id = s.id AND t.answered_at IS NOT NULL) AS raters, "
                "(SELECT COUNT(*) FROM trials t JOIN raters r ON t.rater_id = r.id "
                " WHERE r.study_id = s.id AND t.answered_at IS NOT NULL) AS answers FROM studies s ORDER BY s.id").fetchall()
        return [dict(row) for row in rows]

    def study(self, study_id: int) -> dict:
        for study in self.studies():
            if study["id"] == study_id:
                return study
        raise VMASError(f"no study {study_id}")

    def new_rater(self, study_id: int, rng: Optional[random.Random] = None) -> str:
        """A new rater of a study with a balanced, randomised set of pairs; returns the rater's secret token."""
        rng = rng or random.Random()
        token = secrets.token_urlsafe(24)
        with self._transaction() as db:  # BEGIN IMMEDIATE: concurrent raters see each other's assignments
            study = db.execute("SELECT pairs_per_rater FROM studies WHERE id = ?", (study_id,)).fetchone()
            if study is None:
                raise VMASError(f"no study {study_id}")
            pairs = db.execute(
                "SELECT p.id, COUNT(t.shown_at) AS shown, COUNT(t.id) AS assigned, "
                "TOTAL((t.left_system = 'A') - (t.left_system = 'B')) AS a_lead, "
                "TOTAL(((t.left_system = 'A') - (t.left_system = 'B')) * (t.shown_at IS NOT NULL)) AS a_lead_shown "
                "FROM pairs p LEFT JOIN trials t ON t.pair_id = p.id WHERE p.study_id = ? GROUP BY p.id", (study_id,)).fetchall()
            chosen = sorted(pairs, key=lambda p: (p["shown"], p["assigned"], rng.random()))[: study["pairs_per_rater"]]
            rng.shuffle(chosen)
            rater = db.execute("INSERT INTO raters (study_id, token, created) VALUES (?, ?, ?)",
                               (study_id, token, time.time())).lastrowid
            for position, pair in enumerate(chosen):
                lead = pair["a_lead_shown"] or pair["a_lead"]  # how much more often A was on the left
                left = "B" if lead > 0 else "A" if lead < 0 else rng.choice("AB")
                db.execute("INSERT INTO trials (rater_id, pair_id, position, left_system) VALUES (?, ?, ?, ?)",
                           (rater, pair["id"], position, left))
        return token

    def rater(self, study_id: int, token: Optional[str]) -> Optional[int]:
        """The rater id of a token for this study, or None."""
        if not token:
            return None
        with self._transaction() as db:
            row = db.execute("SELECT id FROM raters WHERE token = ? AND study_id = ?", (token, study_id)).fetchone()
        return None if row is None else row["id"]

    def next_trial(self, rater_id: int) -> dict:
        """The rater's first unanswered trial (its `shown_at` set when first shown), with `done`, `total` and
        whether each side was already played to the end (`left_played`, `right_played`)."""
        with self._transaction() as db:
            counts = db.execute("SELECT COUNT(*) AS total, COUNT(answered_at) AS done FROM trials WHERE rater_id = ?",
                                (rater_id,)).fetchone()
            row = db.execute("SELECT id, shown_at, left_played_at, right_played_at FROM trials "
                             "WHERE rater_id = ? AND answered_at IS NULL ORDER BY position LIMIT 1", (rater_id,)).fetchone()
            if row is not None and row["shown_at"] is None:
                db.execute("UPDATE trials SET shown_at = ? WHERE id = ?", (time.time(), row["id"]))
        return {"trial": None if row is None else row["id"], "done": counts["done"], "total": counts["total"],
                **{f"{side}_played": row is not None and row[f"{side}_played_at"] is not None for side in SIDES}}

    def _open_trial(self, db: sqlite3.Connection, rater_id: int, trial_id: int) -> sqlite3.Row:
        """One of the rater's own trials, shown and not answered yet."""
        row = db.execute("SELECT * FROM trials WHERE id = ? AND rater_id = ?", (trial_id, rater_id)).fetchone()
        if row is None:
            raise VMASError("this pair is not one of yours")
        if row["answered_at"] is not None:
            raise VMASError("this pair was already answered; answers cannot be changed")
        if row["shown_at"] is None:
            raise VMASError("this pair was not shown to you yet")
        return row

    def played(self, rater_id: int, trial_id: int, side: str) -> None:
        """Record that the clip on `side` (left/right) of one of the rater's open trials was played to its end."""
        if side not in SIDES:
            raise VMASError(f"no side {side!r}: left or right")
        with self._transaction() as db:
            self._open_trial(db, rater_id, trial_id)
            db.execute(f"UPDATE trials SET {side}_played_at = COALESCE({side}_played_at, ?) WHERE id = ?",
                       (time.time(), trial_id))

    def answer(self, rater_id: int, trial_id: int, quality: str, sync: str) -> None:
        """Store a rater's answers to one of the rater's own shown trials, once, after both clips were played."""
        for question, choice in (("quality", quality), ("sync", sync)):
            if choice not in CHOICES:
                raise VMASError(f"please answer both questions ({QUESTIONS[question]})")
        with self._transaction() as db:
            row = self._open_trial(db, rater_id, trial_id)
            unplayed = [side for side in SIDES if row[f"{side}_played_at"] is None]
            if unplayed:
                raise VMASError(f"please play both clips to the end before answering (not played yet: {' and '.join(unplayed)})")
            db.execute("UPDATE trials SET quality = ?, sync = ?, answered_at = ? WHERE id = ?",
                       (quality, sync, time.time(), trial_id))

    def trial_video(self, rater_id: int, trial_id: int, side: str) -> Optional[Path]:
        """The video shown on `side` (left/right) of one of the rater's own trials."""
        if side not in SIDES:
            return None
        with self._transaction() as db:
            row = db.execute("SELECT t.left_system, p.video_a, p.video_b FROM trials t JOIN pairs p ON t.pair_id = p.id "
                             "WHERE t.id = ? AND t.rater_id = ?", (trial_id, rater_id)).fetchone()
        if row is None:
            return None
        system = row["left_system"] if side == "left" else {"A": "B", "B": "A"}[row["left_system"]]
        return Path(row["video_a"] if system == "A" else row["video_b"])

    def answers(self, study_id: int) -> list[dict]:
        """Every stored answer of a study: rater, pair, order shown, choices, the systems preferred, seconds taken."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT r.id AS rater, p.name AS pair, t.position, t.left_system, t.quality, t.sync, "
                "t.shown_at, t.answered_at FROM trials t JOIN raters r ON t.rater_id = r.id "
                "JOIN pairs p ON t.pair_id = p.id WHERE r.study_id = ? AND t.answered_at IS NOT NULL "
                "ORDER BY t.answered_at, t.id", (study_id,)).fetchall()
        return [{"rater": row["rater"], "pair": row["pair"], "position": row["position"] + 1,
                 "left": row["left_system"], "right": {"A": "B", "B": "A"}[row["left_system"]],
                 "quality_choice": row["quality"], "sync_choice": row["sync"],
                 "quality": preferred_system(row["quality"], row["left_system"]),
                 "sync": preferred_system(row["sync"], row["left_system"]),
                 "seconds": round(row["answered_at"] - row["shown_at"], 3),
                 "answered_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(row["answered_at"]))} for row in rows]
