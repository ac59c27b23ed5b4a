"""The listening study's pages: `/study/{id}` (a rater's next pair; the rater is a secret token in a
cookie, made when the visitor presses Start, one per browser; the page reports each clip played to
its end to `/study/{id}/played/{trial}/{side}`) and the admin pages `/admin` (studies, "new
study"), `/admin/studies/{id}` (results) and `/admin/studies/{id}/answers.csv` (every stored
answer). The admin pages take the admin token as `Authorization: Bearer <token>`, or log in with
/admin?token=..., which keeps an HMAC of the token (never the token) in a cookie until
`POST /admin/logout`."""
from __future__ import annotations

import csv
import hashlib
import hmac
import io
from typing import Annotated, Optional

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from vmas_lightning.errors import VMASError
from vmas_lightning.serve.pages import NotAllowed, page
from vmas_lightning.serve.settings import ServeSettings
from vmas_lightning.serve.stats import OUTCOMES, rater_results, study_results
from vmas_lightning.serve.study import CHOICES, QUESTIONS, StudyStore

ADMIN_COOKIE = "vmas_admin"
RowId = Annotated[int, Path(ge=1, lt=2**63)]  # a study or trial id: SQLite's integer range (else a 422 line, not a 500)


def admin_session(token: str) -> str:
    """The admin cookie's value: an HMAC keyed with the admin token, so the cookie never holds the token."""
    return hmac.new(token.encode(), b"vmas serve admin session", hashlib.sha256).hexdigest()


def study_router(settings: ServeSettings, store: StudyStore) -> APIRouter:
    router = APIRouter()
    session = admin_session(settings.admin_token)

    def is_admin(request: Request) -> bool:
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(bearer.strip().encode(), settings.admin_token.encode())
        return hmac.compare_digest((request.cookies.get(ADMIN_COOKIE) or "").encode(), session.encode())

    def require_admin(request: Request) -> None:
        if not is_admin(request):
            raise NotAllowed("the admin pages need the admin token that `vmas serve` printed: open /admin?token=... "
                             "or send `Authorization: Bearer <token>`")

    # --- raters ---------------------------------------------------------------------------------
    def rater_cookie(study_id: int) -> str:
        return f"vmas_rater_{study_id}"

    def known_rater(request: Request, study_id: int) -> int:
        rater = store.rater(study_id, request.cookies.get(rater_cookie(study_id)))
        if rater is None:
            raise VMASError("your rater cookie is missing: open the study link again in this browser")
        return rater

    @router.get("/study/{study_id}", response_class=HTMLResponse)
    def rate(request: Request, study_id: RowId):
        """The rater's next pair; a visitor without a rater cookie gets the instructions and Start (no rater yet)."""
        study = store.study(study_id)
        rater = store.rater(study_id, request.cookies.get(rater_cookie(study_id)))
        trial = None if rater is None else store.next_trial(rater)
        return page(request, "study_trial.html", study=study, trial=trial, questions=QUESTIONS, choices=CHOICES)

    @router.post("/study/{study_id}/start")
    def start(request: Request, study_id: RowId):
        """A new rater for this browser (none when it already has one), then its first pair."""
        response = RedirectResponse(f"/study/{study_id}", status_code=303)
        if store.rater(study_id, request.cookies.get(rater_cookie(study_id))) is None:
            response.set_cookie(rater_cookie(study_id), store.new_rater(study_id), max_age=90 * 86400,
                                path=f"/study/{study_id}", httponly=True, samesite="lax")
        return response

    @router.post("/study/{study_id}/played/{trial}/{side}")
    def played(request: Request, study_id: RowId, trial: RowId, side: str):
        store.played(known_rater(request, study_id), trial, side)
        return Response(status_code=204)

    @router.post("/study/{study_id}")
    def answer(request: Request, study_id: RowId, trial: Annotated[int, Form(ge=1, lt=2**63)], quality: str = Form(""),
               sync: str = Form("")):
        store.answer(known_rater(request, study_id), trial, quality, sync)
        return RedirectResponse(f"/study/{study_id}", status_code=303)

    @router.get("/study/{study_id}/media/{trial}/{side}")
    def trial_video(request: Request, study_id: RowId, trial: RowId, side: str):
        rater = store.rater(study_id, request.cookies.get(rater_cookie(study_id)))
        path = None if rater is None else store.trial_video(rater, trial, side)
        if path is None or not path.is_file():
            raise HTTPException(404, "no such video")
        return FileResponse(path)

    # --- admin ----------------------------------------------------------------------------------
    @router.get("/admin", response_class=HTMLResponse)
    def admin(request: Request, token: Optional[str] = None):
        if token is not None:  # log in: the token goes out of the address bar, its HMAC into a cookie
            if not hmac.compare_digest(token.encode(), settings.admin_token.encode()):
                raise NotAllowed("wrong admin token")
            response = RedirectResponse("/admin", status_code=303)
            response.set_cookie(ADMIN_COOKIE, session, httponly=True, samesite="strict")
            return response
        require_admin(request)
        return page(request, "admin.html", studies=store.studies(), media_root=store.media_root)

    @router.post("/admin/logout")
    def logout():
        response = RedirectResponse("/admin", status_code=303)
        response.delete_cookie(ADMIN_COOKIE, httponly=True, samesite="strict")
        return response

    @router.post("/admin/studies")
    def create_study(request: Request, name: str = Form(...), folder_a: str = Form(...), folder_b: str = Form(...),
                     label_a: str = Form("A"), label_b: str = Form("B"), pairs_per_rater: int = Form(10, ge=1, le=100_000)):
        require_admin(request)
        study = store.create_study(name, folder_a, folder_b, label_a, label_b, pairs_per_rater)
        return RedirectResponse(f"/admin/studies/{study}", status_code=303)

    @router.get("/admin/studies/{study_id}", response_class=HTMLResponse)
    def results(request: Request, study_id: RowId):
        require_admin(request)
        study = store.study(study_id)
        answers = store.answers(study_id)
        return page(request, "results.html", study=study, results=study_results(answers), by_rater=rater_results(answers),
                    questions=QUESTIONS, outcomes=OUTCOMES, rater_url=str(request.url_for("rate", study_id=study_id)))

    @router.get("/admin/studies/{study_id}/answers.csv")
    def export(request: Request, study_id: RowId):
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
