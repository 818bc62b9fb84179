"""The targeting list: the page (rendered contents cached per night and query), its CSV export
and its JSON API. The list's own query parameters only go into links and cache keys."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment
from markupsafe import Markup, escape
from starlette.concurrency import run_in_threadpool

from riskpipe import schema as S
from riskpipe.web.data import WorkbenchData
from riskpipe.web.days import SingleFlightLRU, outcomes_version
from riskpipe.web.lists import PAGE_SIZES, SORTABLE, VIEWS, WARM_PAGES, ListQuery, busiest_ports
from riskpipe.web.routes.deps import current_user, render

router = APIRouter(dependencies=[Depends(current_user)])
LIST_PAGE_CACHE_SIZE = 256  # rendered list contents (~100 kB each)
WARM_FILTER_PAGES = 3  # pages of each order and port filter rendered when a worker starts
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


def pick_day(request: Request, value: str | None) -> tuple[date | None, list[date]]:
    """(the day asked for, else the latest published one; every published day)."""
    days: list[date] = request.app.state.data.days()
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


@router.get("/list", response_class=HTMLResponse)
async def list_page(request: Request, day: str | None = None) -> HTMLResponse:
    # async: a cached page is served on the event loop without a thread hop; building one
    # (seconds for a new day) runs in the thread pool
    state = request.app.state
    d, days = pick_day(request, day)
    q = list_query(request)
    base = {k: v for k, v in list_params(request).items() if k not in ("page", "sort", "desc") and v}
    if d:
        base["day"] = d.isoformat()
    key = page_key(state, d, days, q, base)
    pages: SingleFlightLRU = state.list_pages
    content = pages.peek(key)
    if content is None:
        content = await run_in_threadpool(pages.get_or_compute, key, lambda: list_content(request, d, days, q, base))
    # the session's CSRF token in place of the per-process placeholder the cached content holds
    content = Markup(content.replace(state.csrf_slot, str(escape(request.state.csrf))))
    return render(request, "list.html", {"day": d, "content": content})


def page_key(state: Any, d: date | None, days: list[date], q: ListQuery, base: dict[str, str]) -> tuple:
    """Everything a rendered list content depends on (links carry the list's other parameters
    given): the day, the published days and files, the outcomes recorded, the query."""
    return (
        d,
        tuple(days),
        state.data.day_version(d) if d else None,
        state.list_generation,
        outcomes_version(state.settings.home),  # an outcome recorded by another worker process
        q,
        tuple(sorted(base.items())),
    )


def warm_pages(app: Any) -> int:
    """Render the newest day's most asked list contents before the worker accepts connections
    (the number rendered): the first :data:`~riskpipe.web.lists.WARM_PAGES` pages of each view in
    its default order (what the menu and the back links open), and the first
    :data:`WARM_FILTER_PAGES` pages of every order and busiest port filter the day's data was
    warmed for. A first render costs 5-10 ms of CPU against about 1 ms for a rendered one, and
    20 analysts at once queued behind those. The contents are any user's: the CSRF token goes in
    per request, as for every cached content."""
    state = app.state
    days: list[date] = state.data.days()
    if not days:
        return 0
    d = days[0]
    wanted: list[tuple[ListQuery, dict[str, str]]] = []
    for view in VIEWS:
        base = {"day": d.isoformat(), **({} if view == "targets" else {"view": view})}
        df = state.data.day_frame(d, view)
        if df is None:
            continue
        pages = max(1, -(-df.frame.height // 50))
        wanted += [(ListQuery(view=view, page=p), base) for p in range(1, min(WARM_PAGES, pages) + 1)]
        variants = [(base, ListQuery(view=view, sort=col)) for col in SORTABLE[view]]
        if view == "all":
            variants += [({**base, "port": p}, ListQuery(view=view, port=p)) for p in busiest_ports(df)]
        for vbase, vq in variants:
            wanted += [(replace(vq, page=p), vbase) for p in range(1, WARM_FILTER_PAGES + 1)]
    request = SimpleNamespace(app=app)
    done = 0
    for q, base in wanted:
        q = q.normalised()
        key = page_key(state, d, days, q, base)
        state.list_pages.get_or_compute(key, lambda: list_content(request, d, days, q, base))  # noqa: B023 - called at once
        done += 1
    return done


def list_content(request: Any, d: date | None, days: list[date], q: ListQuery, base: dict[str, str]) -> str:
    """The list page's content for any user (the CSRF token is a placeholder)."""
    state = request.app.state
    result = state.data.list_page(d, q) if d else None

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
    env: Environment = state.env
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
        csrf=state.csrf_slot,
    )


@router.get("/list.csv")
def list_csv(request: Request, day: str | None = None) -> Response:
    d, _ = pick_day(request, day)
    if d is None:
        raise HTTPException(404, "nothing published yet")
    q = list_query(request)
    body = request.app.state.data.export_csv(d, q)
    name = f"riskpipe-{q.view}-{d.isoformat()}.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/api/list")
def api_list(request: Request, day: str | None = None) -> dict[str, Any]:
    d, _ = pick_day(request, day)
    if d is None:
        return {"day": None, "total": 0, "rows": []}
    data: WorkbenchData = request.app.state.data
    res = data.list_page(d, list_query(request))
    rows = [
        {k: (v.isoformat() if isinstance(v, date) else v) for k, v in r.items() if not k.startswith("_")}
        for r in res.rows
    ]
    return {"day": d.isoformat(), "total": res.total, "page": res.query.page, "pages": res.pages, "rows": rows}
