"""What every workbench route shares, as FastAPI dependencies: the signed-in user (signed session
cookie whose generation is the account's current one), the supervisor role, and the POSTed form
checked against the session's CSRF token; plus page rendering and the shared small helpers.

Why dependencies: a router declares ``dependencies=[Depends(current_user)]`` once and every route
in it is covered (a route cannot forget the check); FastAPI runs a dependency once per request
however many times it is asked for, so a route may also take ``user: User = Depends(current_user)``.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any
from urllib.parse import parse_qs

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment
from starlette.concurrency import run_in_threadpool

from riskpipe.cases import CaseStore
from riskpipe.users import User, UserStore
from riskpipe.web.days import accounts_version
from riskpipe.web.security import SESSION_COOKIE, SESSION_MAX_AGE_S, make_session, read_session, tokens_match

MAX_FORM_BYTES = 64 * 1024
USER_CACHE_S = 1.0  # a change by the CLI reaches running sessions within this (the workbench's own: at once)


class NotAuthenticated(Exception):
    """No valid session: pages redirect to the login form, API routes answer 401."""


async def active_user(request: Request, username: str) -> User | None:
    """The active account, looked up at most once a second per user (a database round trip
    per page was a tenth of the list page's time), and again at once when any workbench process
    of the home changed an account (the accounts stamp, one stat: a logout in one worker ends the
    session in all). A cached answer is served on the event loop: no thread hop for the hot list page."""
    cache: dict[str, tuple[float, tuple[int, int, int], User | None]] = request.app.state.user_cache
    now = time.monotonic()
    stamp = accounts_version(request.app.state.settings.home)
    hit = cache.get(username)
    if hit is not None and now - hit[0] < USER_CACHE_S and hit[1] == stamp:
        return hit[2]
    users: UserStore = request.app.state.users
    user = await run_in_threadpool(users.get, username)
    cache[username] = (now, stamp, user)
    return user


async def current_user(request: Request) -> User:
    """The signed-in user (pages redirect to the login form, the API answers 401); puts the user
    and the session's CSRF token in the request state for templates and the access audit."""
    session = read_session(request.app.state.secret, request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise NotAuthenticated()
    user = await active_user(request, session["u"])
    if user is None or not tokens_match(user.generation, session["g"]):
        raise NotAuthenticated()  # gone, deactivated, logged out or password changed since
    request.state.user = user
    request.state.csrf = session["c"]
    return user


async def supervisor_user(user: User = Depends(current_user)) -> User:
    """The signed-in user when a supervisor, else 403."""
    if not user.is_supervisor:
        raise HTTPException(403, "supervisors only")
    return user


async def read_form(request: Request, csrf_expected: str | None) -> dict[str, str]:
    """The urlencoded body (last value per field), refused (403) unless its ``csrf`` field or the
    ``X-CSRF-Token`` header matches ``csrf_expected``; size and field count are bounded."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "bad form") from None
    form = {k: v[-1] for k, v in parsed.items()}
    if not tokens_match(csrf_expected, form.get("csrf") or request.headers.get("x-csrf-token")):
        raise HTTPException(403, "missing or invalid CSRF token: reload the page and try again")
    return form


async def posted_form(request: Request, user: User = Depends(current_user)) -> dict[str, str]:
    """The POSTed form of a signed-in user, refused (403) without the session's CSRF token."""
    return await read_form(request, request.state.csrf)


async def supervisor_form(request: Request, user: User = Depends(supervisor_user)) -> dict[str, str]:
    """The POSTed form of a supervisor (403 for others), CSRF-checked."""
    return await read_form(request, request.state.csrf)


async def api_csrf(request: Request, user: User = Depends(current_user)) -> None:
    """A JSON API POST: the session's CSRF token in the ``X-CSRF-Token`` header, else 403."""
    if not tokens_match(request.state.csrf, request.headers.get("x-csrf-token")):
        raise HTTPException(403, "missing or invalid CSRF token")


#: the dependencies that check a POST's CSRF token (the route test asserts every POST has one)
CSRF_CHECKS = (posted_form, supervisor_form, api_csrf)


def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
    """A page from the autoescaping templates, with the user and CSRF token of the request."""
    env: Environment = request.app.state.env
    ctx.setdefault("user", getattr(request.state, "user", None))
    ctx.setdefault("csrf", getattr(request.state, "csrf", ""))
    ctx["request_path"] = request.url.path
    return HTMLResponse(env.get_template(name).render(**ctx), status_code=status)


def set_session_cookie(request: Request, resp: Response, user: User) -> None:
    """A fresh session cookie for ``user`` (login, or a supervisor who changed their own password)."""
    cookie, _csrf = make_session(request.app.state.secret, user.username, user.generation)
    resp.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="lax",
        max_age=SESSION_MAX_AGE_S,
        secure=request.url.scheme == "https",
    )


def safe_next(value: str | None, default: str = "/list") -> str:
    """``value`` when it is a path on this site, else ``default`` (no open redirect)."""
    # browsers drop tabs and newlines, so "/\t/evil" would be "//evil"
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value)
    ):
        return default
    return value


def day_param(day: str | None) -> date | None:
    """The optional ``day`` query parameter (400 unless YYYY-MM-DD)."""
    if not day:
        return None
    try:
        return date.fromisoformat(day)
    except ValueError:
        raise HTTPException(400, "day must be YYYY-MM-DD") from None


def case_store(request: Request) -> CaseStore:
    store: CaseStore | None = getattr(request.app.state, "cases", None)
    if store is None:
        store = request.app.state.cases = CaseStore(request.app.state.settings.db_url)
    return store


def require_shipment(request: Request, shipment_id: str) -> date:
    """The arrival day of a shipment in the raw store, else 404."""
    if len(shipment_id) > 64:
        raise HTTPException(404, "no such shipment in the raw store")
    d: date | None = request.app.state.data.find_day(shipment_id)
    if d is None:
        raise HTTPException(404, "no such shipment in the raw store")
    return d
