"""The Generate page's queue: uploads checked as they arrive, one worker thread that runs them in
order with the one loaded model, and old uploads and results deleted.

Every job lives in its own folder `<work>/jobs/<random id>/` under fixed file names; the uploaded
file's name is only shown back to the user (and its suffix kept when it is a video suffix), never
used as a path.
"""
from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Optional

from vmas_lightning.data.video_io import VIDEO_SUFFIXES
from vmas_lightning.errors import InputFileError, VMASError
from vmas_lightning.generation.config import GenerationConfig

log = logging.getLogger(__name__)
UPLOAD = "upload"
OUTPUT = "music"


@dataclass
class Job:
    """One uploaded video and what became of it (`state`: queued, running, done or failed)."""

    id: str
    name: str
    upload: Path
    config: GenerationConfig
    keep_original_audio: bool
    state: str = "queued"
    stage: str = "waiting"
    progress: float = 0.0
    result: dict = field(default_factory=dict)
    error: Optional[str] = None
    ended: Optional[float] = None


def display_name(name: str) -> str:
    """The last part of an uploaded file's name, printable, for messages and download names."""
    name = re.split(r"[/\\]", name or "")[-1]
    return re.sub(r"[^\w.\- ]", "_", name)[:100] or "video"


def user_message(err: VMASError, name: str) -> str:
    """An `InputFileError` names the server's copy of the file: name the user's file instead."""
    return f"{name}: {err.problem}" if isinstance(err, InputFileError) else str(err)


class JobQueue:
    """Generation jobs of `vmas serve`, run one at a time by `generation` (a `generation.pipeline.Generation`).

    Args:
        generation: the loaded model.
        folder: where job folders go (created).
        max_bytes, max_video_s: upload limits.
        keep_s: seconds a finished job's files are kept.
    """

    def __init__(self, generation, folder: Path, max_bytes: int, max_video_s: float, keep_s: float):
        self.generation = generation
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.max_video_s, self.keep_s = max_bytes, max_video_s, keep_s
        self.jobs: dict[str, Job] = {}
        self.pending: deque[str] = deque()
        self.wake = threading.Condition()
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the worker and the cleaner threads."""
        self.threads = [threading.Thread(target=self._work, name="vmas-generate", daemon=True),
                        threading.Thread(target=self._clean, name="vmas-cleanup", daemon=True)]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        with self.wake:
            self.wake.notify_all()
        for thread in self.threads:
            thread.join(timeout=5)

    async def receive(self, name: str, chunks: AsyncIterator[bytes], declared_bytes: Optional[int]) -> Path:
        """Write an upload to a new job folder, refusing it once it passes the size limit; returns its path."""
        name = display_name(name)
        limit = f"{name}: larger than this server's upload limit of {self.max_bytes / 2**20:g} MB"
        if declared_bytes is not None and declared_bytes > self.max_bytes:
            raise VMASError(limit)
        job_id = uuid.uuid4().hex
        folder = self.folder / job_id
        folder.mkdir()
        suffix = Path(name).suffix.lower()
        path = folder / (UPLOAD + (suffix if suffix in VIDEO_SUFFIXES else ""))
        size = 0
        with path.open("wb") as file:
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_bytes:
                    break
                file.write(chunk)
        if size > self.max_bytes:
            shutil.rmtree(folder)
            raise VMASError(limit)
        return path

    def submit(self, name: str, upload: Path, config: GenerationConfig, keep_original_audio: bool) -> Job:
        """Check an upload from `receive` (a video stream, readable, not too long) and queue it; its
        folder is removed when the check fails. Blocking: run it off the event loop."""
        from vmas_lightning.generation.mux import video_duration

        job = Job(upload.parent.name, display_name(name), upload, config, keep_original_audio)
        try:
            duration = video_duration(upload)
            if duration > self.max_video_s:
                raise VMASError(f"{job.name}: {duration:.1f} s long; this server takes videos up to {self.max_video_s:g} s")
        except VMASError as err:
            shutil.rmtree(upload.parent, ignore_errors=True)
            raise VMASError(user_message(err, job.name)) from None
        with self.wake:
            self.jobs[job.id] = job
            self.pending.append(job.id)
            self.wake.notify_all()
        return job

    def status(self, job_id: str) -> Optional[dict]:
        """What the page shows: state, place in the queue (1: next), progress, result or error."""
        with self.wake:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            place = self.pending.index(job_id) + 1 if job.state == "queued" else None
            return {"id": job.id, "name": job.name, "state": job.state, "stage": job.stage, "place": place,
                    "progress": round(job.progress, 3), "error": job.error,
                    "result": {k: v for k, v in job.result.items() if k in ("seconds", "generation_s", "mv_align")}
                    | {"files": sorted(k for k in job.result if k in ("video_out", "wav", "plot"))}}

    def file(self, job_id: str, kind: str) -> Optional[tuple[Path, str]]:
        """(path, download name) of a finished job's `video`, `wav` or `plot`."""
        key = {"video": "video_out", "wav": "wav", "plot": "plot"}.get(kind)
        job = self.jobs.get(job_id)
        if key is None or job is None or key not in job.result:
            return None
        path = Path(job.result[key])
        return path, f"{Path(job.name).stem}_music{path.suffix}"

    def _work(self) -> None:
        while not self.stopped.is_set():
            with self.wake:
                while not self.pending and not self.stopped.is_set():
                    self.wake.wait()
                if self.stopped.is_set():
                    return
                job = self.jobs[self.pending.popleft()]
                job.state, job.stage = "running", "generating music"
            self._run(job)

    def _run(self, job: Job) -> None:
        def on_step(done: int, total: int) -> None:
            job.progress = done / total
            if done == total:
                job.stage = "writing the video, plot and scores"

        try:
            job.result = self.generation(job.upload, job.upload.parent / OUTPUT, job.upload.parent / "plot.png",
                                         config=job.config, keep_original_audio=job.keep_original_audio, on_step=on_step)
            job.state, job.stage = "done", "done"
        except VMASError as err:
            job.state, job.error = "failed", user_message(err, job.name)
        except Exception as err:  # the server goes on; the traceback goes to its log
            log.exception("job %s (%s) failed", job.id, job.name)
            job.state, job.error = "failed", f"{job.name}: generation failed ({type(err).__name__}: {err})"
        job.ended = time.time()

    def cleanup(self, now: Optional[float] = None) -> list[str]:
        """Delete the folders of jobs that ended more than `keep_s` ago (and stray folders that old,
        e.g. from before a restart); returns the ids removed."""
        now = time.time() if now is None else now
        removed = []
        for folder in self.folder.iterdir():
            with self.wake:
                job = self.jobs.get(folder.name)
                if job is not None and job.ended is None:
                    continue
                ended = job.ended if job is not None else folder.stat().st_mtime
                if now - ended <= self.keep_s:
                    continue
                self.jobs.pop(folder.name, None)
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
        return removed

    def _clean(self) -> None:
        while not self.stopped.wait(min(60.0, self.keep_s / 4)):
            self.cleanup()
