"""The Generate page's queue: uploads checked as they arrive, one worker thread that runs them in
order with the one loaded model, and old uploads and results deleted.

Every job lives in its own folder `<jobs>/<random id>/` under fixed file names (the uploaded file's
name is only shown back to the user, and its suffix kept when it is a video suffix, never used as a
path) and in the SQLite file `<jobs>/jobs.sqlite`: its state, settings, stage timings and files.
So a job's link keeps working across restarts until cleanup, and a job that a restart (or kill -9)
interrupted is queued again once, then reported as interrupted.

The work is bounded: at most `max_queued` jobs wait, at most `max_per_client` of them from one
client; each job has `budget_s` seconds (music past it fails the job; the video, plot and scores
past it are skipped, the music kept); MV-Align is scored for videos of at most `score_max_side` px.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import sqlite3
import threading
import time
import uuid
from contextlib import closing
from pathlib import Path
from typing import AsyncIterator, Optional

from vmas_lightning.video_io import VIDEO_SUFFIXES
from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.config import GenerationConfig
from vmas_lightning.generation.pipeline import LATE_STAGES, STAGES
from vmas_lightning.serve.database import connect

log = logging.getLogger(__name__)
UPLOAD = "upload"
OUTPUT = "music"
DATABASE = "jobs.sqlite"
FILES = {"video": "video_out", "wav": "wav", "plot": "plot"}  # what a job offers: URL kind -> result key
ENDED = ("done", "failed", "cancelled", "interrupted")
MAX_ATTEMPTS = 2  # a job interrupted by this many restarts is not queued again
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, name TEXT NOT NULL, client TEXT NOT NULL, upload TEXT NOT NULL,
    config TEXT NOT NULL, keep_original_audio INTEGER NOT NULL, state TEXT NOT NULL, stage TEXT NOT NULL,
    timings TEXT NOT NULL DEFAULT '{}', result TEXT NOT NULL DEFAULT '{}', error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, started REAL, ended REAL, text TEXT NOT NULL DEFAULT '');
"""
MAX_TEXT_CHARS = 500  # a job's caption


class Busy(VMASError):
    """The queue or this client's share of it is full (429: try again later)."""


class Cancelled(VMASError):
    """The job was cancelled by its user."""


class InvalidSettings(VMASError):
    """A job's sampling settings are out of range (422)."""


def display_name(name: str) -> str:
    """The last part of an uploaded file's name, printable, for messages and download names."""
    name = re.split(r"[/\\]", name or "")[-1]
    return re.sub(r"[^\w.\- ]", "_", name)[:100] or "video"


def user_message(err: VMASError, name: str) -> str:
    """An `InputFileError` names the server's copy of the file: name the user's file instead."""
    return f"{name}: {err.problem}" if isinstance(err, InputFileError) else str(err)


def check_sampling(config: GenerationConfig, **changes) -> GenerationConfig:
    """`config` with `changes` (a job's sampling settings), when they are finite numbers in
    `GenerationConfig`'s ranges (a seed in 0..2**63-1, top-k at most 2**31); `InvalidSettings` with
    one line naming every bad one otherwise. The API checks a job's settings so before it reads the upload."""
    problems = []
    for name in ("cfg_scale", "text_cfg_scale", "temperature", "top_p"):
        value = changes.get(name, getattr(config, name))
        if not (isinstance(value, (int, float)) and abs(value) < 1e6):  # also nan and inf
            problems.append(f"{name} must be a finite number below 1e6, got {value}")
    seed, top_k = changes.get("seed", config.seed), changes.get("top_k", config.top_k)
    if seed is not None and not 0 <= seed < 2**63:
        problems.append(f"seed must be in 0..2**63-1, got {seed}")
    if not 0 <= top_k <= 2**31:
        problems.append(f"top_k must be in 0..2**31, got {top_k}")
    if problems:
        raise InvalidSettings("; ".join(problems))
    try:
        return dataclasses.replace(config, **changes)  # GenerationConfig's own range checks
    except VMASError as err:
        raise InvalidSettings(str(err)) from None


def check_text(text: str, has_text: bool) -> str:
    """A job's caption, stripped, when the model takes one and it is at most `MAX_TEXT_CHARS` long;
    `InvalidSettings` otherwise. Empty: video only."""
    text = text.strip()
    if text and not has_text:
        raise InvalidSettings("this model has no text conditioning (it was trained without model.text): leave the text empty")
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidSettings(f"text must be at most {MAX_TEXT_CHARS} characters, got {len(text)}")
    return text


class JobQueue:
    """Generation jobs of `vmas serve`, run one at a time by `generation` (a `generation.pipeline.Generation`).

    Args:
        generation: the loaded model.
        folder: where job folders and the jobs database go (created).
        max_bytes, max_video_s: upload limits.
        keep_s: seconds a finished job's files (and its record) are kept.
        max_queued: jobs that may wait at once; max_per_client: of them from one client.
        budget_s: seconds a job may run; score_max_side: the largest video side (px) MV-Align scores.
    """

    def __init__(self, generation, folder: Path, max_bytes: int, max_video_s: float, keep_s: float,
                 max_queued: int = 20, max_per_client: int = 2, budget_s: float = 900.0, score_max_side: int = 1280):
        self.generation = generation
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_video_s, self.keep_s = max_bytes, max_video_s, keep_s
        self.max_queued, self.max_per_client = max_queued, max_per_client
        self.budget_s, self.score_max_side = budget_s, score_max_side
        self.database = self.folder / DATABASE
        with closing(self._connect()) as db:
            db.executescript(SCHEMA)
            if "text" not in {row["name"] for row in db.execute("PRAGMA table_info(jobs)")}:  # a database of an earlier version
                db.execute("ALTER TABLE jobs ADD COLUMN text TEXT NOT NULL DEFAULT ''")
        self.lock = threading.Condition()  # guards the queue's order and the running job's progress
        self.progress: dict[str, float] = {}  # job id -> fraction of the music made (the running job)
        self.cancelled: set[str] = set()
        self.receiving: dict[str, str] = {}  # job folder -> client, while its upload arrives
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []

    # --- the database -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        return connect(self.database)

    def _execute(self, sql: str, *args) -> list[sqlite3.Row]:
        with closing(self._connect()) as db:
            return db.execute(sql, args).fetchall()

    def _update(self, job_id: str, **values) -> None:
        values = {k: json.dumps(v) if k in ("timings", "result") else v for k, v in values.items()}
        self._execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in values)} WHERE id = ?", *values.values(), job_id)

    def _job(self, job_id: str) -> Optional[sqlite3.Row]:
        rows = self._execute("SELECT * FROM jobs WHERE id = ?", job_id)
        return rows[0] if rows else None

    # --- threads ------------------------------------------------------------------------------------
    def start(self) -> None:
        """`recover`, then start the worker and the cleaner threads."""
        self.recover()
        self.stopped.clear()
        self.threads = [threading.Thread(target=self._work, name="vmas-generate", daemon=True),
                        threading.Thread(target=self._clean, name="vmas-cleanup", daemon=True)]
        for thread in self.threads:
            thread.start()

    def recover(self) -> None:
        """Queue again the jobs a stop (or kill -9) interrupted while they ran, once; a job interrupted
        `MAX_ATTEMPTS` times is reported as interrupted."""
        for row in self._execute("SELECT id, attempts FROM jobs WHERE state = 'running'"):
            if row["attempts"] < MAX_ATTEMPTS:
                self._update(row["id"], state="queued", stage="queued again after a server restart", started=None)
            else:
                self._update(row["id"], state="interrupted", stage="interrupted", ended=time.time(),
                             error=f"the server restarted {row['attempts']} times while making this job's music; upload it again")

    def stop(self) -> None:
        self.stopped.set()
        with self.lock:
            self.lock.notify_all()
        for thread in self.threads:
            thread.join(timeout=5)

    # --- uploads ------------------------------------------------------------------------------------
    def _check_room(self, client: str) -> None:
        """`Busy` when the queue (counting uploads still arriving) or this client's share of it is full."""
        rows = self._execute("SELECT client FROM jobs WHERE state IN ('queued', 'running')")
        clients = [row["client"] for row in rows] + list(self.receiving.values())
        if len(clients) >= self.max_queued:
            raise Busy(f"the queue is full ({self.max_queued} videos); try again in a few minutes")
        if clients.count(client) >= self.max_per_client:
            raise Busy(f"you have {self.max_per_client} videos in the queue already; wait for one or cancel it")

    async def receive(self, name: str, chunks: AsyncIterator[bytes], declared_bytes: Optional[int],
                      client: str = "local") -> Path:
        """Write an upload to a new job folder, refusing it once it passes the size limit (or when
        the queue has no room for `client`); returns its path. An upload that breaks off leaves nothing."""
        name = display_name(name)
        limit = f"{name}: larger than this server's upload limit of {self.max_bytes / 2**20:g} MB"
        if declared_bytes is not None and declared_bytes > self.max_bytes:
            raise VMASError(limit)
        job_id = uuid.uuid4().hex
        with self.lock:
            self._check_room(client)
            self.receiving[job_id] = client
        folder = self.folder / job_id
        suffix = Path(name).suffix.lower()
        path = folder / (UPLOAD + (suffix if suffix in VIDEO_SUFFIXES else ""))
        size = 0
        try:
            folder.mkdir()
            with path.open("wb") as file:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise VMASError(limit)
                    file.write(chunk)
        except BaseException as err:  # too large, or the client went away (starlette's ClientDisconnect)
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(err, VMASError):
                raise
            if isinstance(err, Exception):
                raise VMASError(f"{name}: the upload broke off after {size} bytes") from None
            raise
        finally:
            with self.lock:
                self.receiving.pop(job_id, None)
        return path

    def submit(self, name: str, upload: Path, config: GenerationConfig, keep_original_audio: bool,
               client: str = "local", text: str = "") -> str:
        """Check an upload from `receive` (a video stream of at least 2 frames, readable, not too long)
        and queue it with `config` and the caption `text` (checked by the caller: `check_sampling`,
        `check_text`); its folder is removed
        when a check fails. Returns the job's id. Blocking: run it off the event loop."""
        from vmas_lightning.generation.mux import video_span

        name = display_name(name)
        try:
            duration, frames = video_span(upload)
            if frames < 2:
                raise VMASError(f"{name}: a video needs at least 2 frames, this file has {frames} (a picture?)")
            if duration > self.max_video_s:
                raise VMASError(f"{name}: {duration:.1f} s long; this server takes videos up to {self.max_video_s:g} s")
            with self.lock:
                self._check_room(client)
                self._execute("INSERT INTO jobs (id, name, client, upload, config, keep_original_audio, state, stage, created, text) "
                              "VALUES (?, ?, ?, ?, ?, ?, 'queued', 'waiting', ?, ?)", upload.parent.name, name, client,
                              str(upload), json.dumps(dataclasses.asdict(config)), int(keep_original_audio), time.time(), text)
                self.lock.notify_all()
        except VMASError as err:
            shutil.rmtree(upload.parent, ignore_errors=True)
            raise (Busy if isinstance(err, Busy) else VMASError)(user_message(err, name)) from None
        return upload.parent.name

    # --- what the page asks -------------------------------------------------------------------------
    def status(self, job_id: str) -> Optional[dict]:
        """What the page shows: state, the stage running and the seconds each took, place in the
        queue (1: next), progress, files made, problems or error."""
        with self.lock:
            job = self._job(job_id)
            if job is None:
                return None
            place = None
            if job["state"] == "queued":
                place = self._execute("SELECT COUNT(*) AS n FROM jobs WHERE state = 'queued' AND created <= ?",
                                      job["created"])[0]["n"]
            progress = 1.0 if job["state"] == "done" else self.progress.get(job_id, 0.0)
        result = json.loads(job["result"])
        return {"id": job["id"], "name": job["name"], "state": job["state"], "stage": job["stage"], "place": place,
                "progress": round(progress, 3), "error": job["error"], "timings": json.loads(job["timings"]),
                "problems": result.get("problems", []),
                "result": {k: v for k, v in result.items() if k in ("seconds", "generation_s", "mv_align")}
                | {"files": sorted(kind for kind, key in FILES.items() if key in result)}}

    def file(self, job_id: str, kind: str) -> Optional[tuple[Path, str]]:
        """(path, download name) of a job's `video`, `wav` or `plot`, when it was made."""
        job = self._job(job_id) if kind in FILES else None
        result = {} if job is None else json.loads(job["result"])
        if FILES.get(kind) not in result:
            return None
        path = Path(result[FILES[kind]])
        return path, f"{Path(job['name']).stem}_music{path.suffix}"

    def cancel(self, job_id: str) -> Optional[dict]:
        """Cancel a queued job now, a running one at its next step; an ended job is left as it is."""
        with self.lock:
            job = self._job(job_id)
            if job is None:
                return None
            if job["state"] == "queued":
                self._update(job_id, state="cancelled", stage="cancelled", ended=time.time(), error=f"{job['name']}: cancelled")
            elif job["state"] == "running":
                self.cancelled.add(job_id)
        return self.status(job_id)

    # --- the worker ---------------------------------------------------------------------------------
    def _next(self) -> Optional[sqlite3.Row]:
        with self.lock:
            while not self.stopped.is_set():
                rows = self._execute("SELECT * FROM jobs WHERE state = 'queued' ORDER BY created LIMIT 1")
                if rows:
                    job = rows[0]
                    self._update(job["id"], state="running", stage=STAGES["read"], started=time.time(),
                                 attempts=job["attempts"] + 1)
                    self.progress[job["id"]] = 0.0
                    return job
                self.lock.wait(timeout=1.0)
        return None

    def _work(self) -> None:
        while (job := self._next()) is not None:
            self._run(job)

    def _run(self, job: sqlite3.Row) -> None:
        job_id, name = job["id"], job["name"]
        deadline = time.monotonic() + self.budget_s

        def check(music: bool) -> None:
            if job_id in self.cancelled:
                raise Cancelled(f"{name}: cancelled")
            if time.monotonic() > deadline:
                raise VMASError(f"{name}: stopped after {self.budget_s:g} s, this server's limit per job" if music
                                else f"skipped: this server's {self.budget_s:g} s per job were spent")

        def on_stage(stage: str, timings: dict[str, float]) -> None:
            self._update(job_id, stage=STAGES[stage], timings=timings)
            check(music=stage not in LATE_STAGES)

        def on_step(done: int, total: int) -> None:
            with self.lock:
                self.progress[job_id] = done / total
            check(music=True)

        upload = Path(job["upload"])
        config = GenerationConfig(**json.loads(job["config"]))
        try:
            result = self.generation(upload, upload.parent / OUTPUT, upload.parent / "plot.png", config=config,
                                     keep_original_audio=bool(job["keep_original_audio"]), on_step=on_step,
                                     on_stage=on_stage, title=name, score_max_side=self.score_max_side, text=job["text"])
            result["problems"] = [f"{name}: {problem}" for problem in result.get("problems", [])]
            self._update(job_id, state="done", stage="done", result=result, timings=result.pop("timings"), ended=time.time())
        except Cancelled as err:
            self._update(job_id, state="cancelled", stage="cancelled", error=str(err), ended=time.time())
        except VMASError as err:
            self._update(job_id, state="failed", stage="failed", error=user_message(err, name), ended=time.time())
        except Exception:  # the server goes on; the traceback goes to its log
            log.exception("job %s (%s) failed", job_id, name)
            self._update(job_id, state="failed", stage="failed", ended=time.time(),
                         error=f"{name}: making the music failed on the server (its log has the details)")
        with self.lock:
            self.progress.pop(job_id, None)
            self.cancelled.discard(job_id)

    # --- cleanup ------------------------------------------------------------------------------------
    def cleanup(self, now: Optional[float] = None) -> list[str]:
        """Delete the folders and records of jobs that ended more than `keep_s` ago (and stray folders
        that old); returns the ids removed."""
        now = time.time() if now is None else now
        removed = []
        with self.lock:
            for row in self._execute("SELECT id FROM jobs WHERE ended IS NOT NULL AND ended < ?", now - self.keep_s):
                self._execute("DELETE FROM jobs WHERE id = ?", row["id"])
                removed.append(row["id"])
            known = {row["id"] for row in self._execute("SELECT id FROM jobs")} | set(self.receiving)
        for folder in self.folder.iterdir():
            stray = folder.name not in known and now - folder.stat().st_mtime > self.keep_s
            if folder.is_dir() and (folder.name in removed or stray):
                shutil.rmtree(folder, ignore_errors=True)
                removed += [] if folder.name in removed else [folder.name]
        return removed

    def _clean(self) -> None:
        while not self.stopped.wait(min(60.0, self.keep_s / 4)):
            self.cleanup()
