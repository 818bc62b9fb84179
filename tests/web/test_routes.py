"""Authentication, roles and CSRF are dependencies of the routers (riskpipe.web.routes.deps), not
code each route must remember: every route but the login form depends on the session check,
every POST on a CSRF check, every supervisor page on the role; and an anonymous request to any
route is sent to the login form (pages) or answered 401 (API)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.routing import iter_route_contexts
    from fastapi.testclient import TestClient

from riskpipe.web import create_app
from riskpipe.web.routes import deps

from .conftest import DAY

PUBLIC = {("/login", "GET"), ("/login", "POST")}
SUPERVISOR_ONLY = {"/users", "/rules", "/rules/preview", "/rules/save", "/audit"}


@pytest.fixture()
def app(home_settings):
    return create_app(home_settings)


def _calls(dependant: Any) -> set[Callable[..., Any]]:
    """Every dependency callable a route runs (its tree, depth first)."""
    out: set[Callable[..., Any]] = set()
    for sub in dependant.dependencies:
        if sub.call is not None:
            out.add(sub.call)
        out |= _calls(sub)
    return out


class Route:
    """One (path, method) of the app as served (router dependencies included)."""

    def __init__(self, path: str, method: str, dependant: Any) -> None:
        self.path, self.method, self.calls = path, method, _calls(dependant)


def _routes(app) -> list[Route]:
    found = [
        Route(rc.path, m, rc.dependant)
        for rc in iter_route_contexts(app.routes)
        if hasattr(rc, "dependant")  # not the static files mount
        for m in sorted(rc.methods or ())
    ]
    assert len(found) >= 25  # every page of the workbench, not an empty app
    return found


def test_every_route_but_login_depends_on_the_session_check(app) -> None:
    routes = _routes(app)
    missing = [
        (r.path, r.method) for r in routes if (r.path, r.method) not in PUBLIC and deps.current_user not in r.calls
    ]
    assert missing == []
    assert {(r.path, r.method) for r in routes if deps.current_user not in r.calls} == PUBLIC


def test_every_post_depends_on_a_csrf_check(app) -> None:
    checks = set(deps.CSRF_CHECKS)
    posts = [r for r in _routes(app) if r.method == "POST" and (r.path, r.method) not in PUBLIC]
    assert len(posts) >= 8
    assert [r.path for r in posts if not checks & r.calls] == []


def test_supervisor_pages_depend_on_the_role(app) -> None:
    assert {r.path for r in _routes(app) if deps.supervisor_user in r.calls} == SUPERVISOR_ONLY


def test_an_anonymous_request_to_any_route_goes_to_login(app) -> None:
    client = TestClient(app)
    for route in _routes(app):
        if (route.path, route.method) in PUBLIC:
            continue
        path = re.sub(r"\{day\}", DAY.isoformat(), route.path)
        path = re.sub(r"\{[^}]+\}", "S1", path)
        r = client.request(route.method, path, follow_redirects=False)
        if path.startswith("/api/"):
            assert r.status_code == 401, (route.method, path)
        else:
            assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), (route.method, path)
