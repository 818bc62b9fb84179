"""The targeting list: the page (rendered contents cached per night and query), its CSV export
and its JSON API. The list's own query parameters only go into links and cache keys."""

from __future__ import annotations

from datetime import date
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
from riskpipe.web.lists import PAGE_SIZES, SORTABLE, ListQuery
from riskpipe.web.routes.deps import current_user, render

router = APIRouter(dependencies=[Depends(current_user)])
LIST_PAGE_CACHE_SIZE = 256  # rendered list contents (~100 kB each)
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
    # everything the content depends on (links carry the list's other parameters given)
    key = (
        d,
        tuple(days),
        state.data.day_version(d) if d else None,
        state.list_generation,
        outcomes_version(state.settings.home),  # an outcome recorded by another worker process
        q,
        tuple(sorted(base.items())),
    )
    pages: SingleFlightLRU = state.list_pages
    content = pages.peek(key)
    if content is None:
        content = await run_in_threadpool(pages.get_or_compute, key, lambda: list_content(request, d, days, q, base))
    # the session's CSRF token in place of the per-process placeholder the cached content holds
    content = Markup(content.replace(state.csrf_slot, str(escape(request.state.csrf))))
    return render(request, "list.html", {"day": d, "content": content})


def list_content(request: Request, d: date | None, days: list[date], q: ListQuery, base: dict[str, str]) -> str:
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
