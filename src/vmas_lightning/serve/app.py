"""`vmas serve`'s app: the Generate page (`generate_routes`), the listening study
(`study_routes`), `/healthz`, and one-line errors (a page, or `{"error": ...}` under `/api/`)."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from vmas_lightning.errors import VMASError
from vmas_lightning.serve.generate_routes import generate_router
from vmas_lightning.serve.jobs import Busy, InvalidSettings, JobQueue
from vmas_lightning.serve.pages import NotAllowed, page
from vmas_lightning.serve.settings import ServeSettings
from vmas_lightning.serve.study import StudyStore
from vmas_lightning.serve.study_routes import study_router

STATUS = {NotAllowed: 403, InvalidSettings: 422, Busy: 429}  # other `VMASError`s: 400


def create_app(settings: ServeSettings, jobs: JobQueue, store: StudyStore) -> FastAPI:
    """The app; `jobs` is started and stopped with it."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        jobs.start()
        yield
        jobs.stop()

    app = FastAPI(title="vmas serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(VMASError)
    async def user_error(request: Request, err: VMASError, status: Optional[int] = None):
        status = status or next((code for kind, code in STATUS.items() if isinstance(err, kind)), 400)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(err)}, status_code=status)
        return page(request, "message.html", status, title="Cannot do that", message=str(err))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{error['loc'][-1]}: {error['msg']}" for error in err.errors())
        return await user_error(request, VMASError(problems), 422)

    @app.exception_handler(HTTPException)
    async def not_found(request: Request, err: HTTPException):
        message = "no such page" if err.status_code == 404 else str(err.detail)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=err.status_code)
        return page(request, "message.html", err.status_code, title="Not found", message=message)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    app.include_router(generate_router(settings, jobs))
    app.include_router(study_router(settings, store))
    return app
