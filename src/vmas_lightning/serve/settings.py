"""`ServeSettings`: every setting of `vmas serve`, checked before the model is loaded."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from vmas_lightning.errors import VMASError


@dataclass
class ServeSettings:
    """Where `vmas serve` listens, keeps its files, and what it accepts.

    Args:
        ckpt: the `VMASModule` checkpoint the Generate page uses (loaded once).
        host, port: where the server listens (127.0.0.1: this machine only).
        work_dir: uploads and results (`jobs/`) and the study database (`studies.sqlite`).
        media_root: study folders must lie inside it (the admin names them relative to it).
        max_upload_mb: larger uploads are refused while they arrive.
        max_video_s: longer videos are refused before they are queued.
        keep_minutes: uploads and results are deleted this long after their job ended.
        max_queued: jobs that may wait or run at once (more: "try again later", 429).
        max_per_client: of those, from one client address.
        job_budget_s: seconds a job may run: music not ready by then fails the job; the video, plot
            and scores not made by then are skipped (the music kept).
        score_max_side: MV-Align only for videos of at most this side (px): its protocol's flow
            runs at the native size (5 s of 4K: ~10 min on one core); larger ones are not scored.
        admin_token: the token of the admin pages; None draws one at start (printed with the admin URL).
        device: auto (cuda when available), cpu or cuda.
        beats_config: vmas config files, stacked, whose `data.beats` the plots' beats use.
    """

    ckpt: str
    host: str = "127.0.0.1"
    port: int = 7860
    work_dir: str = "runs/serve"
    media_root: str = "."
    max_upload_mb: float = 500.0
    max_video_s: float = 600.0
    keep_minutes: float = 60.0
    max_queued: int = 20
    max_per_client: int = 2
    job_budget_s: float = 900.0
    score_max_side: int = 1280
    admin_token: Optional[str] = None
    device: str = "auto"
    beats_config: Sequence[str] = ()

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.port <= 65535:
            problems.append(f"--port must be in 1..65535, got {self.port}")
        for name in ("max_upload_mb", "max_video_s", "keep_minutes", "max_queued", "max_per_client", "job_budget_s",
                     "score_max_side"):
            if not getattr(self, name) > 0:
                problems.append(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.admin_token is not None and len(self.admin_token) < 8:
            problems.append("--admin-token must have at least 8 characters")
        if not Path(self.media_root).is_dir():
            problems.append(f"--media-root {self.media_root}: not a folder")
        if problems:
            raise VMASError("serve: " + "; ".join(problems))
        if self.admin_token is None:
            self.admin_token = secrets.token_urlsafe(16)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def keep_s(self) -> float:
        return self.keep_minutes * 60.0
