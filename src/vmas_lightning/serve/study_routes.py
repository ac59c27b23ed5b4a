"""The listening study's pages: `/study/{id}` (a rater's next pair; the rater is a secret token in a
cookie) and the admin pages `/admin` (studies, "new study"; needs the admin token:
/admin?token=...), `/admin/studies/{id}` (results) and `/admin/studies/{id}/answers.csv` (every
stored answer)."""
from __future__ import annotations

import csv
import io
import secrets
from typing import Optional

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from vmas_lightning.errors import VMASError
from vmas_lightning.serve.pages import NotAllowed, page
from vmas_lightning.serve.settings import ServeSettings
from vmas_lightning.serve.stats import OUTCOMES, study_results
from vmas_lightning.serve.study import CHOICES, QUESTIONS, StudyStore

ADMIN_COOKIE = "vmas_admin"


def study_router(settings: ServeSettings, store: StudyStore) -> APIRouter:
    router = APIRouter()

    def is_admin(request: Request) -> bool:
        token = request.cookies.get(ADMIN_COOKIE) or ""
        return secrets.compare_digest(token.encode(), settings.admin_token.encode())

    def require_admin(request: Request) -> None:
        if not is_admin(request):
            raise NotAllowed("the admin pages need the admin token that `vmas serve` printed: open /admin?token=...")

    # --- raters ---------------------------------------------------------------------------------
    def rater_cookie(study_id: int) -> str:
        return f"vmas_rater_{study_id}"

    @router.get("/study/{study_id}", response_class=HTMLResponse)
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

    @router.post("/study/{study_id}")
    def answer(request: Request, study_id: int, trial: int = Form(...), quality: str = Form(""), sync: str = Form("")):
        rater = store.rater(study_id, request.cookies.get(rater_cookie(study_id)))
        if rater is None:
            raise VMASError("your rater cookie is missing: open the study link again in this browser")
        store.answer(rater, trial, quality, sync)
        return RedirectResponse(f"/study/{study_id}", status_code=303)

    @router.get("/study/{study_id}/media/{trial}/{side}")
    def trial_video(request: Request, study_id: int, trial: int, side: str):
        rater = store.rater(study_id, request.cookies.get(rater_cookie(study_id)))
        path = None if rater is None else store.trial_video(rater, trial, side)
        if path is None or not path.is_file():
            raise HTTPException(404, "no such video")
        return FileResponse(path)

    # --- admin ----------------------------------------------------------------------------------
    @router.get("/admin", response_class=HTMLResponse)
    def admin(request: Request, token: Optional[str] = None):
        if token is not None:  # log in: the token goes into a cookie and out of the address bar
            if not secrets.compare_digest(token.encode(), settings.admin_token.encode()):
                raise NotAllowed("wrong admin token")
            response = RedirectResponse("/admin", status_code=303)
            response.set_cookie(ADMIN_COOKIE, token, httponly=True, samesite="strict")
            return response
        require_admin(request)
        return page(request, "admin.html", studies=store.studies(), media_root=store.media_root)

    @router.post("/admin/studies")
    def create_study(request: Request, name: str = Form(...), folder_a: str = Form(...), folder_b: str = Form(...),
                     label_a: str = Form("A"), label_b: str = Form("B"), pairs_per_rater: int = Form(10)):
        require_admin(request)
        study = store.create_study(name, folder_a, folder_b, label_a, label_b, pairs_per_rater)
        return RedirectResponse(f"/admin/studies/{study}", status_code=303)

    @router.get("/admin/studies/{study_id}", response_class=HTMLResponse)
    def results(request: Request, study_id: int):
        require_admin(request)
        study = store.study(study_id)
        answers = store.answers(study_id)
        return page(request, "results.html", study=study, results=study_results(answers), questions=QUESTIONS,
                    outcomes=OUTCOMES, raters=len({a["rater"] for a in answers}), answers=len(answers),
                    rater_url=str(request.url_for("rate", study_id=study_id)))

    @router.get("/admin/studies/{study_id}/answers.csv")
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

    return router
