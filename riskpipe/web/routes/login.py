"""Signing in and out. Failed logins are counted before the password is checked, per account and
per source address, with a doubling back-off (:class:`riskpipe.users.LoginThrottle`); logout draws
a new session generation, so the cookie (or a copy of it) stops working at once."""

from __future__ import annotations

import logging
import math
import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from riskpipe.users import LoginThrottle, User
from riskpipe.web.days import accounts_changed
from riskpipe.web.routes.deps import current_user, posted_form, read_form, render, safe_next, set_session_cookie
from riskpipe.web.security import LOGIN_CSRF_COOKIE, SESSION_COOKIE

log = logging.getLogger("riskpipe.web")
public = APIRouter()  # the login form and its POST: the only routes without a session
router = APIRouter(dependencies=[Depends(current_user)])


def _seconds(n: int) -> str:
    return f"{n} seconds" if n < 120 else f"{math.ceil(n / 60)} minutes"


@public.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/list") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    resp = render(request, "login.html", {"next": safe_next(next), "login_csrf": token, "error": None, "user": None})
    resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", max_age=3600, path="/login")
    return resp


@public.post("/login")
async def login(request: Request) -> Response:
    form = await read_form(request, request.cookies.get(LOGIN_CSRF_COOKIE))
    username = form.get("username", "").strip()
    password = form.get("password", "")
    again = {"next": safe_next(form.get("next")), "login_csrf": form.get("csrf"), "user": None}
    address = request.client.host if request.client else "unknown"
    # counted before the password is checked: parallel guesses cannot share one stale count
    throttle: LoginThrottle = request.app.state.throttle
    attempt = await run_in_threadpool(throttle.attempt, username, address)
    if attempt.refused:
        wait = math.ceil(attempt.retry_after_s)
        log.info("login refused: back-off")
        refused = render(
            request,
            "login.html",
            {**again, "error": f"Too many failed attempts: try again in {_seconds(wait)}."},
            status=429,
        )
        refused.headers["Retry-After"] = str(wait)
        return refused
    user = await run_in_threadpool(request.app.state.users.authenticate, username, password)
    if user is None:
        log.info("login failed")
        return render(request, "login.html", {**again, "error": "Wrong username or password."}, status=401)
    await run_in_threadpool(throttle.succeeded, attempt)
    resp = RedirectResponse(safe_next(form.get("next")), status_code=303)
    set_session_cookie(request, resp, user)
    resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return resp


@router.post("/logout")
async def logout(
    request: Request, user: User = Depends(current_user), _form: dict[str, str] = Depends(posted_form)
) -> RedirectResponse:
    # server side: a new session generation, so this cookie (or a copy) no longer works
    await run_in_threadpool(request.app.state.users.end_sessions, user.username)
    request.app.state.user_cache.pop(user.username, None)
    await run_in_threadpool(accounts_changed, request.app.state.settings.home)  # ... in every worker
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE)
    return resp


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/list", status_code=303)
