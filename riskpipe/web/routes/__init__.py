"""Workbench routes kept apart from :mod:`riskpipe.web.app`: search, saved views and watchlists,
case work, the audit page, rule feedback and editing (issue 17). They authenticate and render
with the app's own helpers (``app.state.auth``, see :mod:`riskpipe.web.routes.deps`)."""

from __future__ import annotations

from fastapi import FastAPI


def include_routes(app: FastAPI) -> None:
    from riskpipe.web.routes import audit, cases, rules, search

    for module in (search, cases, audit, rules):
        app.include_router(module.router)
    app.add_middleware(audit.AccessAudit)
