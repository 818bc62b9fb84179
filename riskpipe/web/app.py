"""The analyst workbench: FastAPI with server-rendered, autoescaped Jinja2 pages.

This module only assembles the app: state, templates, middleware, error pages and the routers of
:mod:`riskpipe.web.routes`, one per page. Every route except the login form needs a signed-in user
(signed session cookie), every POST the session's CSRF token, supervisor pages the role: the
routers declare these as dependencies (:mod:`riskpipe.web.routes.deps`), so a route cannot forget
them. Manifest text is data, never markup: templates autoescape, the SVG helpers escape, and a
strict Content-Security-Policy forbids inline scripts as a second line. Logs carry the route
template, status and time only (no query strings, no personal data, no client addresses).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.labels import LabelStore
from riskpipe.names import ReferenceNames
from riskpipe.users import LoginLimits, LoginThrottle, UserStore
from riskpipe.web.data import WorkbenchData
from riskpipe.web.days import SingleFlightLRU
from riskpipe.web.routes import audit, cases, health, listing, login, rules, search, shipment, users
from riskpipe.web.routes.deps import NotAuthenticated, render
from riskpipe.web.security import load_or_create_secret

log = logging.getLogger("riskpipe.web")
HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
]
#: every router of the workbench; each declares its own authentication (login.public: none)
ROUTERS = (
    login.public,
    login.router,
    listing.router,
    shipment.router,
    health.router,
    users.router,
    search.router,
    cases.router,
    audit.router,
    rules.router,
)


class HeadersAndLog:
    """Security headers on every response and one log line per request (route template, status,
    time). Plain ASGI rather than ``@app.middleware``: no extra task and stream per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        static = scope["path"].startswith("/static")
        status = [0]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS:
                    headers[k] = v
                if not static:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
        if log.isEnabledFor(logging.INFO):
            route = scope.get("route")
            log.info(
                "%s %s %s %.0fms",
                scope["method"],
                getattr(route, "path", "?"),
                status[0],
                (time.perf_counter() - t0) * 1000,
            )


def create_app(
    settings: Settings, login_limits: LoginLimits | None = None, clock: Callable[[], float] = time.time
) -> FastAPI:
    """The workbench for one data home (reads published outputs, writes labels and users).

    ``login_limits`` and ``clock`` (wall seconds) set the failed-login back-off (tests)."""
    app = FastAPI(title="riskpipe workbench", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan)
    home = Path(settings.home)
    app.state.settings = settings
    app.state.data = WorkbenchData(settings)
    app.state.labels = LabelStore(settings.db_url, timezone=settings.timezone)
    app.state.users = UserStore(settings.db_url)
    app.state.secret = load_or_create_secret(home)
    app.state.throttle = LoginThrottle(settings.db_url, app.state.secret, login_limits, clock)
    app.state.user_cache = {}  # username -> (monotonic time, User | None): see deps.active_user
    app.state.names = names = ReferenceNames.load()
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True)
    )
    env.globals.update(
        S=S,
        fmt_score=lambda v: "" if v is None else f"{v:.3f}",
        fmt_pct=_fmt_pct,
        port_name=names.port,
        hts_name=names.hts,
        positive=S.POSITIVE_OUTCOMES,
    )
    env.filters["qid"] = lambda v: quote(str(v), safe="")
    app.state.env = env
    # Rendered list contents per (day, published files' mtimes, outcome generation, query): the
    # list is the hot page and only changes when a night is published (new mtimes) or an outcome
    # is recorded here (generation bump). The session's CSRF token goes in per request, in place
    # of a per-process random placeholder that manifest text cannot know.
    app.state.list_pages = SingleFlightLRU(listing.LIST_PAGE_CACHE_SIZE)
    app.state.list_generation = 0
    app.state.csrf_slot = f"csrf-{secrets.token_hex(16)}"
    app.state.health_charts = SingleFlightLRU(health.HEALTH_CHART_CACHE_SIZE)

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(HeadersAndLog)
    app.add_exception_handler(NotAuthenticated, _not_authenticated)
    app.add_exception_handler(HTTPException, _http_error)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(audit.AccessAudit)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """A served worker (``riskpipe serve``: uvicorn runs this before the worker accepts
    connections) first loads the newest published day's list views: each worker process holds its
    own, and on a 4 M-row day the first list page of a cold worker took 27-36 s under load (with
    two workers, the users of the one left cold waited that long). Tests' clients skip it."""
    await run_in_threadpool(warm_newest_day, app.state.data)
    try:
        await run_in_threadpool(listing.warm_pages, app)
    except Exception:  # noqa: BLE001 - a warm-up must not stop the workbench from starting
        log.warning("workbench: could not render the newest day's list pages at start", exc_info=True)
    yield


def warm_newest_day(data: WorkbenchData) -> None:
    """Build the newest published day's list views (targets and all scored) with their orders
    and busiest ports' filters, read its targets file and its partner window, and compute the
    page parts of its listed targets (:meth:`~riskpipe.web.shipment.ShipmentData.warm_targets`);
    a failure is logged, never raised (the pages build what they need)."""
    try:
        days = data.days()
        if days:
            for view in ("targets", "all"):
                data.warm_list_views(days[0], data.day_frame(days[0], view), view)
            data.targets_frame(days[0])
            data.partner(days[0], "")  # the day's partner window, read once per process
            data.warm_targets(days[0])
    except Exception:  # noqa: BLE001 - a warm-up must not stop the workbench from starting
        log.warning("workbench: could not load the newest day's list views at start", exc_info=True)


async def _not_authenticated(request: Request, _exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": "login required"}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
    user = getattr(request.state, "user", None)
    page: HTMLResponse = render(
        request, "error.html", {"status": exc.status_code, "message": exc.detail, "user": user}, status=exc.status_code
    )
    return page


def _fmt_pct(value: float | None) -> str:
    """A percentile of the day, truncated (never rounded up to 100): 99.97, 75.0, 0.0."""
    if value is None:
        return ""
    digits = 2 if value >= 99 else 1
    step = 10**digits
    return f"{math.floor(float(value) * step) / step:.{digits}f}"
