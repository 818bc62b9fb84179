"""Case work: assignment of targets to officers, case status and notes, all audited."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from riskpipe.cases import CASE_STATUSES
from riskpipe.errors import RiskpipeError
from riskpipe.users import User
from riskpipe.web.routes.deps import case_store, current_user, posted_form, render, require_shipment

router = APIRouter(dependencies=[Depends(current_user)])


@router.get("/cases", response_class=HTMLResponse)
def cases_page(request: Request, assignee: str = "", status: str = "", user: User = Depends(current_user)):
    if status and status not in CASE_STATUSES:
        raise HTTPException(400, f"status must be one of {', '.join(CASE_STATUSES)}")
    who = user.username if assignee == "" else (None if assignee == "*" else assignee)
    rows = case_store(request).cases(assignee=who, status=status or None)
    return render(
        request, "cases.html", {"rows": rows, "assignee": assignee, "status": status, "statuses": CASE_STATUSES}
    )


@router.get("/case/{shipment_id}", response_class=HTMLResponse)
async def case_page(request: Request, shipment_id: str, user: User = Depends(current_user)):
    day = await run_in_threadpool(require_shipment, request, shipment_id)
    store = case_store(request)
    await run_in_threadpool(store.record_access, user.username, "view_case", shipment_id)
    officers = (
        [u["username"] for u in request.app.state.users.list() if u["active"]]
        if user.is_supervisor
        else [user.username]
    )
    return render(
        request,
        "case.html",
        {
            "sid": shipment_id,
            "day": day,
            "case": store.case(shipment_id),
            "notes": store.notes(shipment_id),
            "audit": store.case_audit(shipment_id),
            "statuses": CASE_STATUSES,
            "officers": officers,
            "label": request.app.state.labels.get(shipment_id),
            "msg": request.query_params.get("msg"),
        },
    )


@router.post("/case/{shipment_id}")
async def case_action(
    request: Request, shipment_id: str, user: User = Depends(current_user), form: dict = Depends(posted_form)
):
    await run_in_threadpool(require_shipment, request, shipment_id)
    store = case_store(request)
    action = form.get("action", "")
    try:
        if action == "assign":
            to = form.get("assignee", "").strip() or None
            if to is not None and request.app.state.users.get(to) is None:
                raise RiskpipeError(f"no active user {to!r}")
            current = store.case(shipment_id).assignee
            if not user.is_supervisor and (to not in (None, user.username) or current not in (None, user.username)):
                raise HTTPException(403, "analysts assign cases to themselves only; ask a supervisor")
            changed = store.assign(shipment_id, to, user.username)
            msg = (f"assigned to {to}" if to else "unassigned") if changed else "no change"
        elif action == "status":
            changed = store.set_status(shipment_id, form.get("status", ""), user.username)
            msg = f"status {form.get('status')}" if changed else "no change"
        elif action == "note":
            store.add_note(shipment_id, form.get("note", ""), user.username)
            msg = "note added"
        else:
            raise HTTPException(400, "unknown action")
    except RiskpipeError as exc:
        msg = str(exc)
    return RedirectResponse(f"/case/{quote(shipment_id, safe='')}?" + urlencode({"msg": msg}), status_code=303)
