"""Search by identifier, saved views and the watchlist."""

from __future__ import annotations

from urllib.parse import urlencode

import polars as pl
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from riskpipe import schema as S
from riskpipe.cases import ID_KINDS
from riskpipe.errors import RiskpipeError
from riskpipe.lookup import read_rows, ready_lookup
from riskpipe.search import KINDS, PAGE_ROWS, find, normalise
from riskpipe.store import Layout
from riskpipe.users import User
from riskpipe.web.routes.deps import case_store, current_user, posted_form, render, safe_next

router = APIRouter(dependencies=[Depends(current_user)])
MAX_QUERY = 200
MAX_ROW_ID = 2**63 - 1  # the database's integer ids; a larger one overflowed in the driver (500)
MAX_OFFSET = 10_000_000  # a page further than any answer (a 90-day answer is counted, not read)


def _row_id(form: dict) -> int:
    """The posted id of a saved view or watchlist entry, refused (400) outside the database's range."""
    row_id = int(form.get("id", "0") or 0)
    if not 1 <= row_id <= MAX_ROW_ID:
        raise HTTPException(400, f"id must be between 1 and {MAX_ROW_ID}")
    return row_id


def _enrich(request: Request, found: pl.DataFrame) -> list[dict]:
    """Result rows (one page) with the night's risk score and the recorded outcome of each
    shipment; a day's scores read by id from its look-up files when they are built (a scan
    decodes the day's 4 M ids)."""
    if found.is_empty():
        return []
    layout = Layout(request.app.state.settings.home)
    scores = []
    read: list[pl.DataFrame] = []
    for (d,), part in found.group_by(S.ARRIVAL_DATE):
        path = layout.day_dir(layout.scores, d) / "scores.parquet"
        if path.exists():
            ids = part[S.SHIPMENT_ID].to_list()
            paths = ready_lookup(layout, d)
            if paths is not None and "scores" in paths:
                read.append(read_rows(paths, ids, [S.SHIPMENT_ID, S.RISK_SCORE], kind="scores"))
                continue
            scores.append(
                pl.scan_parquet(path).select(S.SHIPMENT_ID, S.RISK_SCORE).filter(pl.col(S.SHIPMENT_ID).is_in(ids))
            )
    out = found
    got = [*read, *(pl.collect_all(scores) if scores else [])]
    if got:
        out = out.join(
            pl.concat(got, how="vertical_relaxed").unique(S.SHIPMENT_ID),
            on=S.SHIPMENT_ID,
            how="left",
            maintain_order="left",
        )
    else:
        out = out.with_columns(pl.lit(None, pl.Float64).alias(S.RISK_SCORE))
    labels = request.app.state.labels.current().select(
        S.SHIPMENT_ID, pl.col(S.OUTCOME).cast(pl.String), pl.col(S.EXAM_DATE)
    )
    out = out.join(labels, on=S.SHIPMENT_ID, how="left", maintain_order="left")
    return out.to_dicts()


@router.get("/search", response_class=HTMLResponse)
async def search_page(
    request: Request, q: str = "", kind: str = "", offset: int = 0, user: User = Depends(current_user)
):
    """Every match counted, one page of :data:`PAGE_ROWS` shown (newest first), the others a link away."""
    q = q.strip()
    if len(q) > MAX_QUERY:
        raise HTTPException(400, f"a search is at most {MAX_QUERY} characters")
    if kind and kind not in KINDS:
        raise HTTPException(400, f"kind must be one of {', '.join(KINDS)}")
    if not 0 <= offset <= MAX_OFFSET:
        raise HTTPException(400, f"offset must be between 0 and {MAX_OFFSET}")
    wanted: dict[str, str] = {}
    rows: list[dict] = []
    total = 0
    if q:
        layout = Layout(request.app.state.settings.home)
        found = await run_in_threadpool(find, layout, q, kind, offset=offset, limit=PAGE_ROWS)
        wanted, total = found.wanted, found.total
        rows = await run_in_threadpool(_enrich, request, found.rows)
        # who looked up what: the query as typed (see riskpipe.cases on why not a hash)
        shown = f"; rows {offset + 1}-{offset + len(rows)} shown" if offset else ""
        await run_in_threadpool(
            case_store(request).record_access,
            user.username,
            "search",
            q,
            f"kind={kind or 'any'}; {total} shipments{shown}",
        )
    here = "/search?" + urlencode({"q": q, "kind": kind}) if q else "/search"

    def page_link(at: int) -> str:
        return "/search?" + urlencode({"q": q, "kind": kind, "offset": at})

    newer = page_link(max(0, offset - PAGE_ROWS)) if q and offset > 0 else None
    older = page_link(offset + PAGE_ROWS) if q and offset + PAGE_ROWS < total else None
    return render(
        request,
        "search.html",
        {
            "q": q,
            "kind": kind,
            "kinds": KINDS,
            "wanted": wanted,
            "rows": rows,
            "here": here,
            "searched": bool(q),
            "total": total,
            "first": offset + 1,
            "newer": newer,
            "older": older,
        },
    )


@router.get("/views", response_class=HTMLResponse)
def views_page(request: Request, user: User = Depends(current_user)):
    msg = request.query_params.get("msg")
    return render(request, "views.html", {"views": case_store(request).views(user.username), "msg": msg})


@router.post("/views")
def views_action(request: Request, user: User = Depends(current_user), form: dict = Depends(posted_form)):
    store = case_store(request)
    action = form.get("action", "save")
    try:
        if action == "save":
            url = form.get("url", "")
            if safe_next(url, "") != url or not url:
                raise RiskpipeError("a saved view is a workbench address starting with /")
            store.save_view(user.username, form.get("name", ""), url)
            msg = f"saved view {form.get('name', '').strip()}"
        elif action == "delete":
            store.delete_view(user.username, _row_id(form))
            msg = "view deleted"
        else:
            raise HTTPException(400, "unknown action")
    except (RiskpipeError, ValueError) as exc:
        msg = str(exc)
    return RedirectResponse("/views?" + urlencode({"msg": msg}), status_code=303)


@router.get("/watchlist", response_class=HTMLResponse)
def watchlist_page(request: Request, user: User = Depends(current_user)):
    msg = request.query_params.get("msg")
    return render(
        request, "watchlist.html", {"entries": case_store(request).watchlist(), "kinds": ID_KINDS, "msg": msg}
    )


@router.post("/watchlist")
def watchlist_action(request: Request, user: User = Depends(current_user), form: dict = Depends(posted_form)):
    store = case_store(request)
    action = form.get("action", "add")
    try:
        if action == "add":
            kind = form.get("kind", "")
            if kind not in ID_KINDS:
                raise RiskpipeError(f"kind must be one of {', '.join(ID_KINDS)}")
            value = normalise(kind, form.get("value", "")[:MAX_QUERY])
            if not value:
                raise RiskpipeError("nothing left of that identifier once normalised")
            store.watch(kind, value, user.username, form.get("note"))
            msg = f"on the watchlist from the next night: {kind} {value}"
        elif action == "remove":
            if not store.unwatch(_row_id(form), user.username):
                raise RiskpipeError("no such watchlist entry (removed already?)")
            msg = "removed from the watchlist (from the next night)"
        else:
            raise HTTPException(400, "unknown action")
    except (RiskpipeError, ValueError) as exc:
        msg = str(exc)
    return RedirectResponse("/watchlist?" + urlencode({"msg": msg}), status_code=303)
