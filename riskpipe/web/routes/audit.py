"""The audit of views and exports of personal data: recorded here, read by supervisors only."""

from __future__ import annotations

import atexit
import logging
import queue
import threading

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riskpipe.cases import ACCESS_ACTIONS, CaseStore
from riskpipe.users import User
from riskpipe.web.routes.deps import case_store, render, supervisor_user

router = APIRouter()
log = logging.getLogger("riskpipe.web")

#: route template -> access action; a successful answer to these is recorded
AUDITED_ROUTES = {
    "/shipment/{shipment_id}": "view_shipment",
    "/api/shipment/{shipment_id}": "view_shipment",
    "/list.csv": "export_csv",
    "/api/list": "export_api",  # the same rows as the CSV, page by page
}


class AccessWriter:
    """Writes access-audit rows from a background thread, a batch per transaction, so a page view
    does not wait for (or queue on) the database's write lock: under 20 analysts one insert and
    commit per view held threadpool threads and the SQLite lock. A row's time is taken when the
    view is recorded; :meth:`flush` returns once every row recorded so far is committed (the
    audit page calls it before reading, the app's shutdown and interpreter exit too). A failed
    batch is retried (``with_retry``), then logged without personal data."""

    BATCH = 500

    def __init__(self, store: CaseStore) -> None:
        self.store = store
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        atexit.register(self.flush)

    def record(self, actor: str, action: str, target: str) -> None:
        self._queue.put((self.store.clock(), actor, action, target))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="riskpipe-access-audit", daemon=True)
                self._thread.start()

    def flush(self) -> None:
        """Wait until every row recorded so far is written (or given up on)."""
        self._queue.join()

    def _run(self) -> None:
        from riskpipe.db import with_retry

        while True:
            rows = [self._queue.get()]
            while len(rows) < self.BATCH:
                try:
                    rows.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                with_retry(lambda: self.store.record_accesses(rows))
            except Exception:  # the pages were served; say so without personal data
                log.exception("access audit: could not record %d views", len(rows))
            finally:
                for _ in rows:
                    self._queue.task_done()


def access_writer(fastapi_app) -> AccessWriter:
    """The app's audit writer (made on first use, as the case store)."""
    writer = getattr(fastapi_app.state, "access_writer", None)
    if writer is None:
        store = getattr(fastapi_app.state, "cases", None)
        if store is None:
            store = fastapi_app.state.cases = CaseStore(fastapi_app.state.settings.db_url)
        writer = fastapi_app.state.access_writer = AccessWriter(store)
    return writer


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
        access_writer(scope["app"]).record(user.username, action, target)  # written in the background


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request, actor: str = "", action: str = "", user: User = Depends(supervisor_user)):
    if action and action not in ACCESS_ACTIONS:
        raise HTTPException(400, f"action must be one of {', '.join(ACCESS_ACTIONS)}")
    access_writer(request.app).flush()  # the views recorded so far are shown
    store = case_store(request)
    return render(request, "audit.html", {
        "rows": store.access_log(actor or None, action or None), "actor": actor, "action": action, "actions": ACCESS_ACTIONS,
        "case_changes": store.recent_case_changes(), "rule_edits": store.rule_edits(),
    })
