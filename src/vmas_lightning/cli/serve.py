"""`vmas serve`: the web app (Generate page and listening studies) on one loaded checkpoint.

    vmas serve --ckpt checkpoints/demo/model.ckpt [--host 127.0.0.1 --port 7860]

Prints the Generate page's address and the admin address (with the admin token), then serves
until Ctrl-C.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Optional

from jsonargparse import ArgumentParser

from vmas_lightning.cli import writable_folder
from vmas_lightning.config_file import add_config_argument, stacked_paths
from vmas_lightning.errors import VMASError

HELP = "Web app: drop a video, get it back with music; run A/B listening studies (admin pages need a token)."


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="vmas serve", description=HELP)
    parser.add_argument("--ckpt", required=True, help="VMASModule checkpoint for the Generate page (loaded once).")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0: every interface).")
    parser.add_argument("--port", type=int, default=7860, help="Port to listen on.")
    parser.add_argument("--work-dir", default="runs/serve", help="Uploads, results (jobs/) and the study database (studies.sqlite).")
    parser.add_argument("--media-root", default=".", help="Study folders must lie inside this folder.")
    parser.add_argument("--max-upload-mb", type=float, default=500.0, help="Largest upload accepted (MB).")
    parser.add_argument("--max-video-s", type=float, default=600.0, help="Longest video accepted (seconds).")
    parser.add_argument("--keep-minutes", type=float, default=60.0, help="Uploads and results are deleted this long after their job ends.")
    parser.add_argument("--max-queued", type=int, default=20, help="Jobs that may wait or run at once.")
    parser.add_argument("--max-per-client", type=int, default=2, help="Of those, jobs from one client address.")
    parser.add_argument("--job-budget-s", type=float, default=900.0,
                        help="Seconds a job may run (music not ready: the job fails; video, plot, scores: skipped).")
    parser.add_argument("--score-max-side", type=int, default=1280,
                        help="MV-Align only for videos of at most this side (px; its flow runs at native size).")
    parser.add_argument("--admin-token", type=Optional[str], default=None,
                        help="Token of the admin pages (default: $VMAS_ADMIN_TOKEN, else a new random one each start).")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available.")
    add_config_argument(parser, "its data.beats set the beats of each job's plot (as vmas beats --config; without one: "
                        "the defaults)", flag="--beats-config")
    return parser


def check_port_free(host: str, port: int) -> None:
    """One line, before the model is loaded, when another program listens on `host:port`."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a just-closed server's port is free
        try:
            probe.bind((host, port))
        except OSError as err:
            raise VMASError(f"--host {host} --port {port}: cannot listen there ({err.strerror or err}); choose another --port") from None


def run(cfg) -> int:
    import uvicorn

    from vmas_lightning.generation.pipeline import Generation, GenerationOptions
    from vmas_lightning.serve.app import create_app
    from vmas_lightning.serve.jobs import JobQueue
    from vmas_lightning.serve.settings import ServeSettings
    from vmas_lightning.serve.study import StudyStore

    given_token = cfg.admin_token or os.environ.get("VMAS_ADMIN_TOKEN")
    settings = ServeSettings(ckpt=cfg.ckpt, host=cfg.host, port=cfg.port, work_dir=cfg.work_dir, media_root=cfg.media_root,
                             max_upload_mb=cfg.max_upload_mb, max_video_s=cfg.max_video_s, keep_minutes=cfg.keep_minutes,
                             max_queued=cfg.max_queued, max_per_client=cfg.max_per_client, job_budget_s=cfg.job_budget_s,
                             score_max_side=cfg.score_max_side, admin_token=given_token, device=cfg.device,
                             beats_config=stacked_paths(cfg.beats_config))
    work = writable_folder(settings.work_dir, "--work-dir")
    check_port_free(settings.host, settings.port)
    generation = Generation(GenerationOptions(ckpt=settings.ckpt, device=settings.device, beats_config=settings.beats_config))
    jobs = JobQueue(generation, work / "jobs", settings.max_upload_bytes, settings.max_video_s, settings.keep_s,
                    settings.max_queued, settings.max_per_client, settings.job_budget_s, settings.score_max_side)
    store = StudyStore(work / "studies.sqlite", settings.media_root)
    address = f"http://{settings.host if ':' not in settings.host else f'[{settings.host}]'}:{settings.port}"
    # a token the operator chose is theirs already (and a log is no place for it); a drawn one is shown once
    admin = f"{address}/admin?token={settings.admin_token}" if given_token is None else f"{address}/admin (your admin token)"
    print(f"vmas serve: Generate page {address}/ ; admin {admin} ; files in {Path(work).resolve()}", flush=True)
    uvicorn.run(create_app(settings, jobs, store), host=settings.host, port=settings.port, log_level="warning")
    return 0
