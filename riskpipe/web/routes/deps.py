"""FastAPI dependencies over the app's session and CSRF helpers (``app.state.auth``, set by
:func:`riskpipe.web.app.create_app`): the same checks as the app's own routes."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from riskpipe.cases import CaseStore
from riskpipe.users import User


def current_user(request: Request) -> User:
    """The signed-in user (pages redirect to the login form, the API answers 401)."""
    return request.app.state.auth.user_of(request)


def supervisor_user(request: Request) -> User:
    return request.app.state.auth.supervisor(request)


async def posted_form(request: Request, user: User = Depends(current_user)) -> dict[str, str]:
    """The POSTed form, refused (403) without the session's CSRF token."""
    return await request.app.state.auth.form_of(request, request.state.csrf)


async def supervisor_form(request: Request, user: User = Depends(supervisor_user)) -> dict[str, str]:
    return await request.app.state.auth.form_of(request, request.state.csrf)


def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
    return request.app.state.auth.render(request, name, ctx, status)


def case_store(request: Request) -> CaseStore:
    store = getattr(request.app.state, "cases", None)
    if store is None:
        store = request.app.state.cases = CaseStore(request.app.state.settings.db_url)
    return store


def safe_next(request: Request, value: str | None, default: str) -> str:
    return request.app.state.auth.safe_next(value, default)


def require_shipment(request: Request, shipment_id: str):
    """The arrival day of a shipment in the raw store, else 404."""
    if len(shipment_id) > 64:
        raise HTTPException(404, "no such shipment in the raw store")
    d = request.app.state.data.find_day(shipment_id)
    if d is None:
        raise HTTPException(404, "no such shipment in the raw store")
    return d
