"""The analyst workbench: FastAPI with server-rendered, autoescaped Jinja2 pages.

Every page and API route needs a signed-in user (signed session cookie); every POST needs the
session's CSRF token; analysts record exam outcomes, supervisors also manage users and read the
rules. Failed logins are counted before the password is checked, per account and per source
address, with a doubling back-off (:class:`riskpipe.users.LoginThrottle`); a session ends on
logout, on a password change and on deactivation (the cookie carries the user's session
generation). Manifest text is data, never markup: templates autoescape, the SVG helpers escape, and a
strict Content-Security-Policy forbids inline scripts as a second line. Logs carry the route
template, status and time only (no query strings, no personal data, no client addresses).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riskpipe import charts
from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.errors import RiskpipeError
from riskpipe.labels import LabelStore
from riskpipe.names import ReferenceNames
from riskpipe.users import ROLES, LoginLimits, LoginThrottle, User, UserStore
from riskpipe.web import svg
from riskpipe.web.data import WorkbenchData, psi
from riskpipe.web.days import SingleFlightLRU
from riskpipe.web.health import hit_rates, weekly_hit_rates
from riskpipe.web.lists import PAGE_SIZES, SORTABLE, ListQuery
from riskpipe.web.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_MAX_AGE_S,
    load_or_create_secret,
    make_session,
    read_session,
    tokens_match,
)

log = logging.getLogger("riskpipe.web")
HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
MANIFEST_ORDER = list(S.RAW_SHIPMENT_SCHEMA)
LIST_PAGE_CACHE_SIZE = 256  # rendered list contents (~100 kB each)
USER_CACHE_S = 1.0  # an account change made elsewhere (CLI) reaches running sessions within this
#: the list's query parameters: links and the page cache carry these only (others are dropped)
LIST_PARAMS = (
    "day",
    "view",
    "port",
    "mode",
    "origin",
    "reason",
    "selection",
    "network",
    "sort",
    "desc",
    "page",
    "page_size",
)
MAX_PARAM_LEN = 200  # longer filter values are refused (a port, a reason code or a network id is short)
SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
]


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


class NotAuthenticated(Exception):
    """No valid session: pages redirect to the login form, API routes answer 401."""


def create_app(
    settings: Settings, login_limits: LoginLimits | None = None, clock: Callable[[], float] = time.time
) -> FastAPI:
    """The workbench for one data home (reads published outputs, writes labels and users).

    ``login_limits`` and ``clock`` (wall seconds) set the failed-login back-off (tests)."""
    app = FastAPI(title="riskpipe workbench", docs_url=None, redoc_url=None, openapi_url=None)
    home = Path(settings.home)
    app.state.settings = settings
    app.state.data = WorkbenchData(settings)
    app.state.labels = LabelStore(settings.db_url, timezone=settings.timezone)
    app.state.users = UserStore(settings.db_url)
    app.state.secret = load_or_create_secret(home)
    app.state.throttle = LoginThrottle(settings.db_url, app.state.secret, login_limits, clock)
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True, default_for_string=True)
    )
    names = ReferenceNames.load()
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
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    # -- plumbing -------------------------------------------------------------------------------
    app.add_middleware(HeadersAndLog)
    # Rendered list contents per (day, published files' mtimes, outcome generation, query): the
    # list is the hot page and only changes when a night is published (new mtimes) or an outcome
    # is recorded here (generation bump). The session's CSRF token goes in per request, in place
    # of a per-process random placeholder that manifest text cannot know.
    app.state.list_pages = SingleFlightLRU(LIST_PAGE_CACHE_SIZE)
    app.state.list_generation = 0
    csrf_slot = f"csrf-{secrets.token_hex(16)}"

    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(request: Request, _exc: NotAuthenticated):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "login required"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        user = getattr(request.state, "user", None)
        return render(
            request,
            "error.html",
            {"status": exc.status_code, "message": exc.detail, "user": user},
            status=exc.status_code,
        )

    def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> HTMLResponse:
        ctx.setdefault("user", getattr(request.state, "user", None))
        ctx.setdefault("csrf", getattr(request.state, "csrf", ""))
        ctx["request_path"] = request.url.path
        return HTMLResponse(env.get_template(name).render(**ctx), status_code=status)

    app.state.user_cache = {}

    def active_user(username: str) -> User | None:
        """The active account, looked up at most once a second per user (a database round trip
        per page was a tenth of the list page's time); cleared on every change made here."""
        now = time.monotonic()
        hit = app.state.user_cache.get(username)
        if hit is not None and now - hit[0] < USER_CACHE_S:
            return hit[1]
        user = app.state.users.get(username)
        app.state.user_cache[username] = (now, user)
        return user

    def user_of(request: Request) -> User:
        session = read_session(app.state.secret, request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise NotAuthenticated()
        user = active_user(session["u"])
        if user is None or not tokens_match(user.generation, session["g"]):
            raise NotAuthenticated()  # gone, deactivated, logged out or password changed since
        request.state.user = user
        request.state.csrf = session["c"]
        return user

    def supervisor(request: Request) -> User:
        user = user_of(request)
        if not user.is_supervisor:
            raise HTTPException(403, "supervisors only")
        return user

    async def form_of(request: Request, csrf_expected: str | None) -> dict[str, str]:
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

    def safe_next(value: str | None, default: str = "/list") -> str:
        # a path on this site only: browsers drop tabs and newlines, so "/\t/evil" would be "//evil"
        if (
            not value
            or not value.startswith("/")
            or value.startswith("//")
            or "\\" in value
            or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value)
        ):
            return default
        return value

    # the routers of riskpipe/web/routes authenticate and render with these (routes/deps.py)
    app.state.auth = SimpleNamespace(
        user_of=user_of, supervisor=supervisor, form_of=form_of, render=render, safe_next=safe_next
    )

    def pick_day(value: str | None) -> tuple[date | None, list[date]]:
        days = app.state.data.days()
        if value:
            try:
                return date.fromisoformat(value), days
            except ValueError:
                raise HTTPException(400, "day must be YYYY-MM-DD") from None
        return (days[0] if days else None), days

    def list_params(request: Request) -> dict[str, str]:
        """The list's own query parameters (others dropped: they would go into every link and
        every page-cache key); an over-long value is refused."""
        params = {k: v for k, v in request.query_params.items() if k in LIST_PARAMS}
        for k, v in params.items():
            if len(v) > MAX_PARAM_LEN:
                raise HTTPException(400, f"query parameter {k} is longer than {MAX_PARAM_LEN} characters")
        return params

    def list_query(request: Request) -> ListQuery:
        p = list_params(request)
        try:
            page = int(p.get("page", "1") or 1)
            size = int(p.get("page_size", "50") or 50)
        except ValueError:
            raise HTTPException(400, "page and page_size are numbers") from None
        desc = p.get("desc")
        return ListQuery(
            view=p.get("view", "targets"),
            port=p.get("port", ""),
            mode=p.get("mode", ""),
            origin=p.get("origin", ""),
            reason=p.get("reason", ""),
            selection=p.get("selection", ""),
            network=p.get("network", ""),
            sort=p.get("sort", ""),
            desc=None if desc in (None, "") else desc in ("1", "true", "yes"),
            page=page,
            page_size=size,
        ).normalised()

    # -- login ----------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/list"):
        import secrets as _secrets

        token = _secrets.token_urlsafe(24)
        resp = render(
            request, "login.html", {"next": safe_next(next), "login_csrf": token, "error": None, "user": None}
        )
        resp.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", max_age=3600, path="/login")
        return resp

    @app.post("/login")
    async def login(request: Request):
        form = await form_of(request, request.cookies.get(LOGIN_CSRF_COOKIE))
        username = form.get("username", "").strip()
        password = form.get("password", "")
        again = {"next": safe_next(form.get("next")), "login_csrf": form.get("csrf"), "user": None}
        address = request.client.host if request.client else "unknown"
        # counted before the password is checked: parallel guesses cannot share one stale count
        throttle: LoginThrottle = app.state.throttle
        attempt = await run_in_threadpool(throttle.attempt, username, address)
        if attempt.refused:
            wait = math.ceil(attempt.retry_after_s)
            log.info("login refused: back-off")
            resp = render(
                request,
                "login.html",
                {**again, "error": f"Too many failed attempts: try again in {_seconds(wait)}."},
                status=429,
            )
            resp.headers["Retry-After"] = str(wait)
            return resp
        user = await run_in_threadpool(app.state.users.authenticate, username, password)
        if user is None:
            log.info("login failed")
            return render(request, "login.html", {**again, "error": "Wrong username or password."}, status=401)
        await run_in_threadpool(throttle.succeeded, attempt)
        resp = RedirectResponse(safe_next(form.get("next")), status_code=303)
        set_session_cookie(request, resp, user)
        resp.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
        return resp

    def set_session_cookie(request: Request, resp: Response, user: User) -> None:
        cookie, _csrf = make_session(app.state.secret, user.username, user.generation)
        resp.set_cookie(
            SESSION_COOKIE,
            cookie,
            httponly=True,
            samesite="lax",
            max_age=SESSION_MAX_AGE_S,
            secure=request.url.scheme == "https",
        )

    @app.post("/logout")
    async def logout(request: Request):
        user = user_of(request)
        await form_of(request, request.state.csrf)
        # server side: a new session generation, so this cookie (or a copy) no longer works
        await run_in_threadpool(app.state.users.end_sessions, user.username)
        app.state.user_cache.pop(user.username, None)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    @app.get("/")
    def index(request: Request):
        user_of(request)
        return RedirectResponse("/list", status_code=303)

    # -- the targeting list ---------------------------------------------------------------------
    @app.get("/list", response_class=HTMLResponse)
    async def list_page(request: Request, day: str | None = None):
        # async: a cached page is served on the event loop without a thread hop; building one
        # (seconds for a new day) runs in the thread pool
        user_of(request)
        d, days = pick_day(day)
        q = list_query(request)
        base = {k: v for k, v in list_params(request).items() if k not in ("page", "sort", "desc") and v}
        if d:
            base["day"] = d.isoformat()
        # everything the content depends on (links carry the list's other parameters given)
        key = (
            d,
            tuple(days),
            app.state.data.day_version(d) if d else None,
            app.state.list_generation,
            q,
            tuple(sorted(base.items())),
        )
        pages: SingleFlightLRU = app.state.list_pages
        content = pages.peek(key)
        if content is None:
            content = await run_in_threadpool(pages.get_or_compute, key, lambda: list_content(d, days, q, base))
        content = Markup(content.replace(csrf_slot, str(escape(request.state.csrf))))
        return render(request, "list.html", {"day": d, "content": content})

    def list_content(d: date | None, days: list[date], q: ListQuery, base: dict[str, str]) -> str:
        """The list page's content for any user (the CSRF token is a placeholder)."""
        result = app.state.data.list_page(d, q) if d else None

        def link(**kw: Any) -> str:
            params = {**base, **{k: v for k, v in kw.items() if v not in (None, "")}}
            return "/list?" + urlencode(params)

        def sort_link(col: str) -> str:
            desc = (
                not q.desc
                if q.sort == col
                else col in (S.RISK_SCORE, S.RULE_SCORE, S.DECLARED_VALUE_USD, S.GROSS_WEIGHT_KG)
            )
            return link(sort=col, desc="1" if desc else "0")

        here = link(sort=q.sort, desc="1" if q.desc else "0", page=q.page)
        csv_link = "/list.csv?" + urlencode({**base, "sort": q.sort, "desc": "1" if q.desc else "0"})
        return env.get_template("_list_content.html").render(
            day=d,
            days=days,
            q=q,
            result=result,
            link=link,
            sort_link=sort_link,
            sortable=SORTABLE[q.view],
            page_sizes=PAGE_SIZES,
            here=here,
            csv_link=csv_link,
            outcomes=S.OUTCOMES,
            reasons=S.EXAM_REASONS,
            csrf=csrf_slot,
        )

    @app.get("/list.csv")
    def list_csv(request: Request, day: str | None = None):
        user_of(request)
        d, _ = pick_day(day)
        if d is None:
            raise HTTPException(404, "nothing published yet")
        q = list_query(request)
        body = app.state.data.export_csv(d, q)
        name = f"riskpipe-{q.view}-{d.isoformat()}.csv"
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/api/list")
    def api_list(request: Request, day: str | None = None):
        user_of(request)
        d, _ = pick_day(day)
        if d is None:
            return {"day": None, "total": 0, "rows": []}
        res = app.state.data.list_page(d, list_query(request))
        rows = [
            {k: (v.isoformat() if isinstance(v, date) else v) for k, v in r.items() if not k.startswith("_")}
            for r in res.rows
        ]
        return {"day": d.isoformat(), "total": res.total, "page": res.query.page, "pages": res.pages, "rows": rows}

    # -- one shipment ---------------------------------------------------------------------------
    def day_param(day: str | None) -> date | None:
        """The optional ``day`` query parameter (400 unless YYYY-MM-DD)."""
        if not day:
            return None
        try:
            return date.fromisoformat(day)
        except ValueError:
            raise HTTPException(400, "day must be YYYY-MM-DD") from None

    def shipment_context(shipment_id: str, day: str | None) -> dict[str, Any]:
        data: WorkbenchData = app.state.data
        d = day_param(day)
        manifest = data.manifest(d, shipment_id) if d else None
        if manifest is None:
            d = data.find_day(shipment_id)
            manifest = data.manifest(d, shipment_id) if d else None
        if manifest is None or d is None:
            raise HTTPException(404, "no such shipment in the raw store")
        score = data.score(d, shipment_id)
        partner = data.partner(d, shipment_id)
        labels: LabelStore = app.state.labels
        history = data.party_history(d, manifest, lambda ids: labels.current(shipment_ids=ids))
        net = data.network(d, manifest, (score or {}).get(S.NETWORK_ID))
        return {
            "day": d,
            "sid": shipment_id,
            "manifest": manifest,
            "manifest_order": [c for c in MANIFEST_ORDER if c in manifest]
            + [c for c in manifest if c not in MANIFEST_ORDER],
            "score": score,
            "partner": partner,
            "history": history,
            "network": net,
            "label": labels.get(shipment_id),
            "audit": labels.history(shipment_id),
        }

    @app.get("/shipment/{shipment_id}", response_class=HTMLResponse)
    def shipment_page(request: Request, shipment_id: str, day: str | None = None):
        user_of(request)
        ctx = shipment_context(shipment_id, day)
        ctx["graph"] = svg.network_svg(shipment_id, ctx["network"], "/shipment/", f"?day={ctx['day'].isoformat()}")
        ctx.update(
            outcomes=S.OUTCOMES, reasons=S.EXAM_REASONS, partner_pairs=_partner_pairs(ctx["manifest"], ctx["partner"])
        )
        ctx["saved"] = request.query_params.get("saved") if request.query_params.get("saved") in ("1", "same") else None
        ctx["max_exam_date"] = app.state.labels.latest_exam_date()
        back = request.query_params.get("back") or ""
        ctx["back"] = (
            back
            if back.startswith("/list?") and len(back) <= 2000 and "\\" not in back
            else f"/list?day={ctx['day'].isoformat()}"
        )
        return render(request, "shipment.html", ctx)

    @app.get("/api/shipment/{shipment_id}")
    def api_shipment(request: Request, shipment_id: str, day: str | None = None):
        user_of(request)
        ctx = shipment_context(shipment_id, day)
        return JSONResponse(
            _jsonable({k: ctx[k] for k in ("day", "manifest", "score", "partner", "label", "audit", "network")})
        )

    def require_shipment(shipment_id: str, day: str | None) -> None:
        """404 unless the shipment is in the raw store (the day given, else any day), as
        ``labels import`` quarantines outcomes of unknown shipments."""
        data: WorkbenchData = app.state.data
        d = day_param(day)
        if d is not None and data.manifest(d, shipment_id) is not None:
            return
        if data.find_day(shipment_id) is None:
            raise HTTPException(
                404, f"no shipment {shipment_id} in the raw store: outcomes are recorded for ingested shipments only"
            )

    async def _record(request: Request, shipment_id: str, form: dict[str, str], user: User) -> bool:
        """Record one outcome; True when it changed the stored one (applied and audited), False
        when the same outcome was already recorded. Anything else is refused with the reason."""
        labels: LabelStore = app.state.labels
        try:
            exam_date = date.fromisoformat(form.get("exam_date") or labels.today().isoformat())
        except ValueError:
            raise HTTPException(400, "exam_date must be YYYY-MM-DD") from None
        if exam_date > labels.latest_exam_date():
            today = f"{labels.today().isoformat()}, {settings.timezone}"
            raise HTTPException(
                400,
                f"exam_date {exam_date.isoformat()} is in the future (today is {today}): record an exam once it has taken place",
            )
        outcome, reason = form.get("outcome", ""), form.get("exam_reason", "")
        if not outcome:
            raise HTTPException(400, "choose an outcome: none was selected, so nothing was recorded")
        if outcome not in S.OUTCOMES or reason not in S.EXAM_REASONS:
            raise HTTPException(400, "outcome or exam_reason is not one of the allowed values")
        await run_in_threadpool(require_shipment, shipment_id, form.get("day"))
        examiner = (form.get("examiner") or "").strip()[:200] or None
        if outcome in S.POSITIVE_OUTCOMES and (form.get("confirm") != "yes" or examiner is None):
            # a wrong positive label is worse than none: it teaches the next retrain a seizure
            raise HTTPException(
                400,
                f"{outcome} is a positive finding and becomes a positive training label: confirm it (confirm=yes) "
                "and name the examiner; nothing was recorded",
            )
        try:
            changed = await run_in_threadpool(
                labels.record_one,
                shipment_id,
                exam_date,
                outcome,
                reason,
                user.username,
                examiner,
                (form.get("notes") or "").strip()[:2000] or None,
            )
        except RiskpipeError as exc:
            raise HTTPException(400, str(exc)) from None
        if changed:
            app.state.list_generation += 1  # cached list pages were rendered before this outcome
        return changed

    @app.post("/shipment/{shipment_id}/outcome")
    async def record_outcome(request: Request, shipment_id: str):
        user = user_of(request)
        form = await form_of(request, request.state.csrf)
        changed = await _record(request, shipment_id, form, user)
        default = f"/shipment/{quote(shipment_id, safe='')}?saved=1"
        target = safe_next(form.get("next"), default)
        if not changed:  # say so rather than "saved"
            target = target.replace("saved=1", "saved=same")
        return RedirectResponse(target, status_code=303)

    @app.post("/api/outcome")
    async def api_outcome(request: Request):
        user = user_of(request)
        if not tokens_match(request.state.csrf, request.headers.get("x-csrf-token")):
            raise HTTPException(403, "missing or invalid CSRF token")
        try:
            payload = await request.json()
        except ValueError:
            raise HTTPException(400, "body must be JSON") from None
        if not isinstance(payload, dict) or not payload.get(S.SHIPMENT_ID):
            raise HTTPException(400, "shipment_id is required")
        form = {k: str(v) for k, v in payload.items() if v is not None}
        changed = await _record(request, form[S.SHIPMENT_ID], form, user)
        return {"ok": True, "changed": changed, "history": _jsonable(app.state.labels.history(form[S.SHIPMENT_ID]))}

    # -- model health, report -------------------------------------------------------------------
    app.state.health_charts = SingleFlightLRU(8)

    @app.get("/health", response_class=HTMLResponse)
    def health(request: Request):
        user_of(request)
        data: WorkbenchData = app.state.data
        vols = data.volumes()
        labels = app.state.labels.current()
        rates = hit_rates(labels)
        weekly = weekly_hit_rates(labels)
        latest = vols[-1] if vols else None
        slot_rows = data.slot_use(latest["day"]) if latest else []
        for r in slot_rows:
            r["name"] = names.port(r["port"])
        base = next((v["hist"] for v in vols if v["hist"]), None)
        drift = [psi(base, v["hist"]) if base and v["hist"] else None for v in vols]
        # the charts only change with the data they show: rendered once per distinct data
        key = repr(
            (
                [
                    (
                        v["day"],
                        v["scored"],
                        v["risk"],
                        v["exploration"],
                        v["mean_score"],
                        v["p99_score"],
                        tuple(v["hist"]),
                    )
                    for v in vols
                ],
                weekly,
                slot_rows,
            )
        )
        rendered = app.state.health_charts.get_or_compute(key, lambda: _health_charts(vols, drift, weekly, slot_rows))
        kpis = _health_kpis(vols, weekly)
        champion = data.champion()
        meta = _flatten((champion or {}).get("meta", {}))
        return render(
            request,
            "health.html",
            {
                "vols": vols,
                "rates": rates,
                "charts": {k: Markup(v) for k, v in rendered.items()},
                "kpis": kpis,
                "latest": latest,
                "champion": champion,
                "metrics": meta,
            },
        )

    @app.get("/report/{day}")
    def report(request: Request, day: str):
        user_of(request)
        try:
            d = date.fromisoformat(day)
        except ValueError:
            raise HTTPException(400, "day must be YYYY-MM-DD") from None
        path = app.state.data.report_path(d)
        if not path.exists():
            raise HTTPException(404, "no report for that day")
        return FileResponse(path, media_type="text/html; charset=utf-8")

    # -- supervisors ----------------------------------------------------------------------------
    @app.get("/users", response_class=HTMLResponse)
    def users_page(request: Request):
        supervisor(request)
        msg = request.query_params.get("msg")
        return render(request, "users.html", {"users": app.state.users.list(), "roles": ROLES, "msg": msg})

    @app.post("/users")
    async def users_action(request: Request):
        me = supervisor(request)
        form = await form_of(request, request.state.csrf)
        action, name = form.get("action", ""), form.get("username", "").strip()
        store: UserStore = app.state.users
        try:
            if action == "add":
                await run_in_threadpool(store.add, name, form.get("password", ""), form.get("role", "analyst"))
                msg = f"added {name}"
            elif action == "role":
                store.set_role(name, form.get("role", ""))
                msg = f"{name} is now {form.get('role')}"
            elif action in ("deactivate", "activate"):
                if name == me.username:
                    raise RiskpipeError("you cannot deactivate yourself")
                store.set_active(name, action == "activate")
                msg = f"{name} {action}d"
            elif action == "password":
                await run_in_threadpool(store.set_password, name, form.get("password", ""))
                msg = f"password of {name} changed"  # and every session of theirs ended
            else:
                raise HTTPException(400, "unknown action")
        except RiskpipeError as exc:
            msg = str(exc)
        finally:
            app.state.user_cache.clear()
        resp = RedirectResponse("/users?" + urlencode({"msg": msg}), status_code=303)
        if action == "password" and name == me.username:
            fresh = store.get(me.username)  # the changer stays signed in here, on a new cookie
            if fresh is not None:
                set_session_cookie(request, resp, fresh)
        return resp

    # -- search, case work, audit, rule feedback (riskpipe/web/routes) -------------------------
    from riskpipe.web.routes import include_routes

    include_routes(app)
    return app


PARTNER_PAIRS = [
    ("Description", S.DESCRIPTION, S.DESCRIPTION),
    ("Declared value (USD)", S.DECLARED_VALUE_USD, S.PARTNER_DECLARED_VALUE_USD),
    ("Gross weight (kg)", S.GROSS_WEIGHT_KG, S.GROSS_WEIGHT_KG),
    ("Export country", S.EXPORT_COUNTRY, S.EXPORT_COUNTRY),
    ("Shipper / exporter", S.SHIPPER_NAME, S.EXPORTER_NAME),
    ("Trusted trader / AEO", S.TRUSTED_TRADER, S.EXPORTER_AEO),
    ("Filed / declared at", S.FILED_AT, S.DECLARED_AT),
]


def _partner_pairs(manifest: dict[str, Any], partner: dict[str, Any] | None) -> list[tuple[str, Any, Any, bool]]:
    """(label, manifest value, partner value, differs) rows for the side-by-side table."""
    if partner is None:
        return []
    out = []
    for label, m, p in PARTNER_PAIRS:
        mv, pv = manifest.get(m), partner.get(p)
        differs = False
        if isinstance(mv, (int, float)) and isinstance(pv, (int, float)) and not isinstance(mv, bool):
            differs = abs(mv - pv) > 0.1 * max(abs(mv), abs(pv), 1e-9)
        elif isinstance(mv, str) and isinstance(pv, str) and label != "Filed / declared at":
            differs = mv.strip().lower() != pv.strip().lower()
        out.append((label, mv, pv, differs))
    return out


def _health_charts(
    vols: list[dict], drift: list[float | None], weekly: list[dict], slot_rows: list[dict]
) -> dict[str, str]:
    """The health page's charts (matplotlib SVG via :mod:`riskpipe.charts`)."""
    days = [v["day"].isoformat()[5:] for v in vols]
    latest = vols[-1] if vols else None
    return {
        "volumes": charts.lines(
            days, {"scored": [v["scored"] for v in vols]}, "Scored shipments per night", "shipments"
        ),
        "targets": charts.lines(
            days,
            {"risk": [v["risk"] for v in vols], "exploration": [v["exploration"] for v in vols]},
            "Targets by selection",
            "targets",
        ),
        "scores": charts.lines(
            days,
            {"mean score": [v["mean_score"] for v in vols], "p99 score": [v["p99_score"] for v in vols]},
            "Score level",
            "risk score",
            y_max=1.0,
        ),
        "psi": charts.lines(
            days,
            {"PSI vs first night": drift},
            "Score distribution shift (PSI)",
            "PSI",
            hlines=[(0.1, "moderate"), (0.25, "major")],
        ),
        "hist": charts.score_histogram(
            latest["hist"] if latest else [], f"Risk scores on {latest['day'].isoformat()}" if latest else ""
        ),
        "hits": charts.hit_rate_by_week(weekly),
        "slots": charts.slot_use(
            slot_rows, f"Exam slots used per port on {latest['day'].isoformat()}" if latest else ""
        ),
    }


def _health_kpis(vols: list[dict], weekly: list[dict]) -> list[tuple[str, str, str]]:
    """(value, label, detail) tiles shown first on the health page."""
    out: list[tuple[str, str, str]] = []
    if vols:
        v = vols[-1]
        out.append((f"{v['scored']:,}", "shipments scored", v["day"].isoformat()))
        out.append((f"{v['targets']:,}", "selected for exam", f"{v['exploration']:,} of them exploration"))
    recent = weekly[-8:] if weekly else []
    for reason in ("random", "targeted"):
        rows = [r for r in weekly if r["reason"] == reason and r["week"] in {x["week"] for x in recent}]
        n, k = sum(r["exams"] for r in rows), sum(r["positives"] for r in rows)
        if n:
            lo, hi = charts.wilson(k, n)
            out.append(
                (f"{k / n:.1%}", f"hit rate, {reason} exams", f"{k:,} of {n:,}; 95 % interval {lo:.1%} to {hi:.1%}")
            )
    return out


def _fmt_pct(value: float | None) -> str:
    """A percentile of the day, truncated (never rounded up to 100): 99.97, 75.0, 0.0."""
    if value is None:
        return ""
    digits = 2 if value >= 99 else 1
    step = 10**digits
    return f"{math.floor(float(value) * step) / step:.{digits}f}"


def _seconds(n: int) -> str:
    return f"{n} seconds" if n < 120 else f"{math.ceil(n / 60)} minutes"


def _flatten(meta: dict[str, Any], prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """Scalar entries of a model's meta.json, dotted keys (lists shortened)."""
    out: list[tuple[str, Any]] = []
    if depth > 3 or not isinstance(meta, dict):
        return out
    for k, v in meta.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_flatten(v, key + ".", depth + 1))
        elif isinstance(v, list):
            if len(v) <= 12 and all(not isinstance(x, (dict, list)) for x in v):
                out.append((key, ", ".join(str(x) for x in v)))
            else:
                out.append((key, f"[{len(v)} items]"))
        else:
            out.append((key, v))
    return out[:200]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
