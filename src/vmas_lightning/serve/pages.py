"""What every page of `vmas serve` shares: the Jinja2 templates (`templates/`) and the error that
answers 403."""
from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from vmas_lightning.errors import VMASError

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


class NotAllowed(VMASError):
    """An admin page without the admin token (403)."""


def page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    """The template `name` rendered with `context`."""
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)
