"""The Generate page and its API: `/` (drop a video, follow the queue and progress, get the
results) and `/api/jobs` (POST the video as the request body, settings in the query; GET a job's
state, stage timings and files; DELETE to cancel it)."""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from vmas_lightning.generation.pipeline import STAGES
from vmas_lightning.serve.jobs import MAX_TEXT_CHARS, JobQueue, check_sampling, check_text
from vmas_lightning.serve.pages import page
from vmas_lightning.serve.settings import ServeSettings


def generate_router(settings: ServeSettings, jobs: JobQueue) -> APIRouter:
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse)
    def generate_page(request: Request):
        return page(request, "generate.html", config=jobs.generation.config, max_upload_mb=settings.max_upload_mb,
                    has_text=jobs.generation.model.text is not None, max_text_chars=MAX_TEXT_CHARS,
                    max_video_s=settings.max_video_s, keep_minutes=settings.keep_minutes, stages=STAGES)

    @router.post("/api/jobs")
    async def submit(request: Request, name: str = Query(..., min_length=1), seed: Optional[int] = None,
                     cfg_scale: Optional[float] = None, temperature: Optional[float] = None, top_k: Optional[int] = None,
                     keep_original_audio: bool = False, text: str = "", text_cfg_scale: Optional[float] = None):
        sampling = {"seed": seed, "cfg_scale": cfg_scale, "temperature": temperature, "top_k": top_k,
                    "text_cfg_scale": text_cfg_scale}
        # the settings are checked before the upload is read
        config = check_sampling(jobs.generation.config, **{k: v for k, v in sampling.items() if v is not None})
        text = check_text(text, jobs.generation.model.text is not None)
        client = request.client.host if request.client else "local"
        length = request.headers.get("content-length")
        upload = await jobs.receive(name, request.stream(), int(length) if length and length.isdigit() else None, client)
        job_id = await run_in_threadpool(jobs.submit, name, upload, config, keep_original_audio, client, text)
        return jobs.status(job_id)

    def known(status: Optional[dict]) -> dict:
        if status is None:
            raise HTTPException(404, f"no such job (results are deleted {settings.keep_minutes:g} minutes after they are made)")
        return status

    @router.get("/api/jobs/{job_id}")
    def job_status(job_id: str):
        return known(jobs.status(job_id))

    @router.delete("/api/jobs/{job_id}")
    def cancel(job_id: str):
        """Cancel a job: a queued one at once, a running one at its next step (its state says when)."""
        return known(jobs.cancel(job_id))

    @router.get("/api/jobs/{job_id}/{kind}")
    def job_file(job_id: str, kind: str):
        found = jobs.file(job_id, kind)
        if found is None:
            raise HTTPException(404, "no such file")
        path, download = found
        return FileResponse(path, filename=download, content_disposition_type="inline")

    return router
