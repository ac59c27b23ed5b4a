"""The pages and routes of `vmas serve` (FastAPI, Jinja2 templates in `templates/`).

    /                          Generate: upload a video, follow the queue and progress, get the results
    /api/jobs                  POST the video as the request body, settings in the query; GET a job's state and files
    /study/{id}                a rater's next pair (the rater is a secret token in a cookie)
    /admin                     studies, "new study" (needs the admin token: /admin?token=...)
    /admin/studies/{id}        results; /admin/studies/{id}/answers.csv every stored answer
"""
from __future__ import annotations

import csv
import dataclasses
import io
import secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Form, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from vmas_lightning.errors import VMASError
from vmas_lightning.serve.jobs import JobQueue
from vmas_lightning.serve.settings import ServeSettings
from vmas_lightning.serve.stats import OUTCOMES, study_results
from vmas_lightning.serve.study import CHOICES, QUESTIONS, StudyStore

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
ADMIN_COOKIE = "vmas_admin"


class NotAllowed(VMASError):
    """An admin page without the admin token."""


def create_app(settings: ServeSettings, jobs: JobQueue, store: StudyStore) -> FastAPI:
    """The app; `jobs` is started and stopped with it."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs.start()
        yield
        jobs.stop()

    app = FastAPI(title="vmas serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    def page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)

    def is_admin(request: Request) -> bool:
        token = request.cookies.get(ADMIN_COOKIE) or ""
        return secrets.compare_digest(token.encode(), settings.admin_token.encode())

    def require_admin(request: Request) -> None:
        if not is_admin(request):
            raise NotAllowed("the admin pages need the admin token that `vmas serve` printed: open /admin?token=...")

    @app.exception_handler(VMASError)
    async def user_error(request: Request, err: VMASError):
        status = 403 if isinstance(err, NotAllowed) else 400
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(err)}, status_code=status)
        return page(request, "message.html", status, title="Cannot do that", message=str(err))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{error['loc'][-1]}: {error['msg']}" for error in err.errors())
        return await user_error(request, VMASError(problems))

    @app.exception_handler(HTTPException)
    async def not_found(request: Request, err: HTTPException):
        message = "no such page" if err.status_code == 404 else str(err.detail)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=err.status_code)
        return page(request, "message.html", err.status_code, title="Not found", message=message)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    # --- Generate -------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def generate_page(request: Request):
        return page(request, "generate.html", config=jobs.generation.config, max_upload_mb=settings.max_upload_mb,
                    max_video_s=settings.max_video_s, keep_minutes=settings.keep_minutes)

    @app.post("/api/jobs")
    async def submit(request: Request, name: str = Query(..., min_length=1), seed: Optional[int] = None,
                     cfg_scale: Optional[float] = None, temperature: Optional[float] = None, top_k: Optional[int] = None,
                     keep_original_audio: bool = False):
        sampling = {"seed": seed, "cfg_scale": cfg_scale, "temperature": temperature, "top_k": top_k}
        config = dataclasses.replace(jobs.generation.config, **{k: v for k, v in sampling.items() if v is not None})
        length = request.headers.get("content-length")
        upload = await jobs.receive(name, request.stream(), int(length) if length and length.isdigit() else None)
        job = await run_in_threadpool(jobs.submit, name, upload, config, keep_original_audio)
        return jobs.status(job.id)

    @app.get("/api/jobs/{job_id}")
    def job_status(job_id: str):
        status = jobs.status(job_id)
        if status is None:
            raise HTTPException(404, f"no such job (results are deleted {settings.keep_minutes:g} minutes after they are made)")
        return status

    @app.get("/api/jobs/{job_id}/{kind}")
    def job_file(job_id: str, kind: str):
        found = jobs.file(job_id, kind)
        if found is None:
            raise HTTPException(404, "no such file")
        path, download = found
        return FileResponse(path, filename=download, content_disposition_type="inline")

    # --- Listening study: raters ----------------------------------------------------------------
    def rater_cookie(study_id: int) -> str:
        return f"vmas_rater_{study_id}"

    @app.get("/study/{study_id}", response_class=HTMLResponse)
    def rate(request: Request, study_id: int):
        study = store.study(study_id)
        token = request.cookies.get(rater_cookie(study_id))
        rater = store.rater(study_id, token)
        if rater is None:
            token = store.new_rater(study_id)
            rater = store.rater(study_id, token)
        trial = store.next_trial(rater)
        response = page(request, "study_trial.html", study=study, trial=trial, questions=QUESTIONS, choices=CHOICES)
        response.set_cookie(rater_cookie(study_id), token, max_age=90 * 86400, path=f"/study/{study_id}",
                            httponly=True, samesite="lax")
        return response

    @app.post("/study/{study_id}")
    def answer(request: Request, study_id: int, trial: int = Form(...), quality: str = Form(""), sync: str = Form("")):
        rater = store.rater(study_id, request.cookies.get(rater_cookie(study_id)))
        if rater is None:
            raise VMASError("your rater cookie is missing: open the study link again in this browser")
        store.answer(rater, trial, quality, sync)
        return RedirectResponse(f"/study/{study_id}", status_code=303)

    @app.get("/study/{study_id}/media/{trial}/{side}")
    def trial_video(request: Request, study_id: int, trial: int, side: str):
        rater = store.rater(study_id, request.cookies.get(rater_cookie(study_id)))
        path = None if rater is None else store.trial_video(rater, trial, side)
        if path is None or not path.is_file():
            raise HTTPException(404, "no such video")
        return FileResponse(path)

    # --- Listening study: admin -----------------------------------------------------------------
    @app.get("/admin", response_class=HTMLResponse)
    def admin(request: Request, token: Optional[str] = None):
        if token is not None:  # log in: the token goes into a cookie and out of the address bar
            if not secrets.compare_digest(token.encode(), settings.admin_token.encode()):
                raise NotAllowed("wrong admin token")
            response = RedirectResponse("/admin", status_code=303)
            response.set_cookie(ADMIN_COOKIE, token, httponly=True, samesite="strict")
            return response
        require_admin(request)
        return page(request, "admin.html", studies=store.studies(), media_root=store.media_root)

    @app.post("/admin/studies")
    def create_study(request: Request, name: str = Form(...), folder_a: str = Form(...), folder_b: str = Form(...),
                     label_a: str = Form("A"), label_b: str = Form("B"), pairs_per_rater: int = Form(10)):
        require_admin(request)
        study = store.create_study(name, folder_a, folder_b, label_a, label_b, pairs_per_rater)
        return RedirectResponse(f"/admin/studies/{study}", status_code=303)

    @app.get("/admin/studies/{study_id}", response_class=HTMLResponse)
    def results(request: Request, study_id: int):
        require_admin(request)
        study = store.study(study_id)
        answers = store.answers(study_id)
        return page(request, "results.html", study=study, results=study_results(answers), questions=QUESTIONS,
                    outcomes=OUTCOMES, raters=len({a["rater"] for a in answers}), answers=len(answers),
                    rater_url=str(request.url_for("rate", study_id=study_id)))

    @app.get("/admin/studies/{study_id}/answers.csv")
    def export(request: Request, study_id: int):
        require_admin(request)
        study = store.study(study_id)
        answers = store.answers(study_id)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["rater", "pair", "position", "left", "right", "quality_choice",
                                                 "sync_choice", "quality", "sync", "seconds", "answered_at"])
        writer.writeheader()
        writer.writerows(answers)
        return Response(out.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="study_{study["id"]}_answers.csv"'})

    return app
