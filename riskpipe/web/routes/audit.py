"""The audit of views and exports of personal data: recorded here, read by supervisors only."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riskpipe.cases import ACCESS_ACTIONS, CaseStore
from riskpipe.users import User
from riskpipe.web.routes.deps import case_store, render, supervisor_user

router = APIRouter(dependencies=[Depends(supervisor_user)])
log = logging.getLogger("riskpipe.web")

#: route template -> access action; a successful answer to these is recorded
AUDITED_ROUTES = {
    "/shipment/{shipment_id}": "view_shipment",
    "/api/shipment/{shipment_id}": "view_shipment",
    "/list.csv": "export_csv",
    "/api/list": "export_api",  # the same rows as the CSV, page by page
}


class AccessAudit:
    """Records who opened a shipment page or exported a list (after a 200 answer; the user is the
    one the route's session check put in the request state). Plain ASGI, like the app's log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [0]

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        route = getattr(scope.get("route"), "path", None)
        action = AUDITED_ROUTES.get(route or "")
        user = (scope.get("state") or {}).get("user")
        if action is None or status[0] != 200 or user is None:
            return
        if action == "view_shipment":
            target = str((scope.get("path_params") or {}).get("shipment_id", ""))
        else:
            target = f"{route}?" + scope.get("query_string", b"").decode("latin-1")
        fastapi_app = scope["app"]
        store = getattr(fastapi_app.state, "cases", None)
        if store is None:
            store = fastapi_app.state.cases = CaseStore(fastapi_app.state.settings.db_url)
        try:
            await run_in_threadpool(store.record_access, user.username, action, target)
        except Exception:  # the page was served; say so without personal data
            log.exception("access audit: could not record a %s", action)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, actor: str = "", action: str = "", user: User = Depends(supervisor_user)):
    if action and action not in ACCESS_ACTIONS:
        raise HTTPException(400, f"action must be one of {', '.join(ACCESS_ACTIONS)}")
    store = case_store(request)
    return render(
        request,
        "audit.html",
        {
            "rows": store.access_log(actor or None, action or None),
            "actor": actor,
            "action": action,
            "actions": ACCESS_ACTIONS,
            "case_changes": store.recent_case_changes(),
            "rule_edits": store.rule_edits(),
        },
    )
