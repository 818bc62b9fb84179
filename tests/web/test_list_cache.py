"""The rendered-list cache: per-session CSRF tokens, republication and outcome invalidation."""

from __future__ import annotations

import re
import warnings

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.store import Layout, write_parquet_atomic

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from riskpipe.web import create_app

from .conftest import DAY, csrf_of, login


@pytest.fixture()
def app(home_settings):
    return create_app(home_settings)


def client(app, name: str) -> TestClient:
    c = TestClient(app)
    assert login(c, name).status_code == 303
    return c


def row_tokens(html: str) -> set[str]:
    return set(
        re.findall(r'<input type="hidden" name="csrf" value="([^"]+)">\s*<input type="hidden" name="next"', html)
    )


def shown_ids(html: str) -> list[str]:
    return re.findall(r'<a class="sid" href="/shipment/([^"?]+)\?', html)


def test_each_session_gets_its_own_csrf_token_in_a_cached_page(app) -> None:
    ana, sue = client(app, "ana"), client(app, "sue")
    a, s = ana.get("/list"), sue.get("/list")
    assert len(app.state.list_pages._items) == 1  # one rendering served both users
    ta, ts = row_tokens(a.text), row_tokens(s.text)
    assert ta == {csrf_of(a.text)} and ts == {csrf_of(s.text)} and ta != ts
    assert "csrf-" not in a.text and "csrf-" not in s.text  # no placeholder left
    assert "ana (analyst)" in a.text and "sue (supervisor)" in s.text
    # the token in a cached row form is accepted for that session
    r = ana.post(
        "/shipment/S1/outcome",
        data={"csrf": ta.pop(), "outcome": "no_finding", "exam_reason": "targeted", "exam_date": "2026-01-06"},
        follow_redirects=False,
    )
    assert r.status_code == 303


def test_links_keep_extra_query_parameters_per_request(app) -> None:
    ana = client(app, "ana")
    plain = ana.get("/list?view=all").text
    filtered = ana.get("/list?view=all&port=2720").text
    assert shown_ids(plain) == ["S1", "S3", "S2", "S4"] and shown_ids(filtered) == ["S2", "S4"]
    assert "port=2720" in filtered and "port=2720" not in plain


def test_republished_day_is_shown_on_the_next_request(app, home_settings) -> None:
    ana = client(app, "ana")
    assert shown_ids(ana.get("/list").text) == ["S1", "S3", "S2"]
    assert shown_ids(ana.get("/list?view=all").text) == ["S1", "S3", "S2", "S4"]
    layout = Layout(home_settings.home)
    tpath = layout.day_dir(layout.targets, DAY) / "targets.parquet"
    t = (
        pl.read_parquet(tpath)
        .filter(pl.col(S.SHIPMENT_ID) != "S1")
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias(S.RANK))
    )
    write_parquet_atomic(t, tpath)  # a rerun of the night publishes a new file
    spath = layout.day_dir(layout.scores, DAY) / "scores.parquet"
    s = pl.read_parquet(spath).with_columns(
        pl.when(pl.col(S.SHIPMENT_ID) == "S4").then(0.99).otherwise(pl.col(S.RISK_SCORE)).alias(S.RISK_SCORE)
    )
    write_parquet_atomic(s, spath)
    assert shown_ids(ana.get("/list").text) == ["S3", "S2"]
    assert shown_ids(ana.get("/list?view=all").text) == ["S4", "S1", "S3", "S2"]


def test_recording_an_outcome_invalidates_rendered_lists(app) -> None:
    ana = client(app, "ana")
    page = ana.get("/list").text
    ana.get("/list")
    assert len(app.state.list_pages._items) == 1  # second view served from the cache
    gen = app.state.list_generation
    r = ana.post(
        "/shipment/S3/outcome",
        data={
            "csrf": csrf_of(page),
            "outcome": "no_finding",
            "exam_reason": "random",
            "exam_date": "2026-01-06",
            "next": "/list",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/list"
    assert app.state.list_generation == gen + 1
    again = ana.get("/list").text
    assert len(app.state.list_pages._items) == 2  # rendered afresh after the outcome
    assert shown_ids(again) == ["S1", "S3", "S2"]
    bad = ana.post("/shipment/S3/outcome", data={"csrf": csrf_of(page), "outcome": "cocaine", "exam_reason": "random"})
    assert bad.status_code == 400 and app.state.list_generation == gen + 1  # nothing recorded


def test_cached_list_still_needs_login_and_sends_security_headers(app) -> None:
    ana = client(app, "ana")
    assert ana.get("/list").status_code == 200
    anon = TestClient(app)
    r = anon.get("/list", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    r = ana.get("/list")
    assert r.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Frame-Options"] == "DENY"
    assert "Cache-Control" not in ana.get("/static/style.css").headers


def test_deactivated_user_is_logged_out_at_once_despite_the_user_cache(app) -> None:
    ana, sue = client(app, "ana"), client(app, "sue")
    assert ana.get("/list").status_code == 200  # ana's account is now cached
    token = csrf_of(sue.get("/users").text)
    r = sue.post("/users", data={"csrf": token, "action": "deactivate", "username": "ana"}, follow_redirects=False)
    assert r.status_code == 303
    gone = ana.get("/list", follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"].startswith("/login")


def test_unknown_query_parameters_are_dropped_from_links_and_cache_keys(app) -> None:
    ana = client(app, "ana")
    plain = ana.get("/list?view=all").text
    n = len(app.state.list_pages._items)
    junk = "Z" * 60_000
    for i in range(5):
        page = ana.get(f"/list?view=all&junk{i}={junk}&utm_source=mail")
        assert page.status_code == 200
        assert "junk" not in page.text and "utm_source" not in page.text and "ZZZZ" not in page.text
        assert shown_ids(page.text) == shown_ids(plain)
    assert len(app.state.list_pages._items) == n  # served from the one rendering, no new entry
    # known filters still go into the links
    assert "port=2720" in ana.get("/list?view=all&port=2720&junk=1").text


def test_overlong_filter_values_are_refused_before_caching(app) -> None:
    ana = client(app, "ana")
    ana.get("/list")
    n = len(app.state.list_pages._items)
    r = ana.get("/list?port=" + "9" * 60_000)
    assert r.status_code == 400 and "port" in r.text
    assert len(app.state.list_pages._items) == n
    assert ana.get("/api/list?reason=" + "x" * 60_000).status_code == 400


def test_an_outcome_recorded_in_another_worker_invalidates_this_workers_lists(home_settings) -> None:
    """``riskpipe serve --workers N``: each worker process has its own app and cache; an outcome
    saved through one must make the others render their lists afresh (the generation is shared
    through the data home, not a per-process counter)."""
    here, there = create_app(home_settings), create_app(home_settings)  # two workers of one home
    ana = client(here, "ana")
    ana.get("/list")
    ana.get("/list")
    assert len(here.state.list_pages._items) == 1
    other = client(there, "ana")
    r = other.post(
        "/shipment/S3/outcome",
        data={
            "csrf": csrf_of(other.get("/list").text),
            "outcome": "no_finding",
            "exam_reason": "random",
            "exam_date": "2026-01-06",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    ana.get("/list")
    assert len(here.state.list_pages._items) == 2  # rendered afresh in this worker too


def test_a_logout_in_one_worker_ends_the_session_in_another_at_once(home_settings) -> None:
    """``riskpipe serve --workers N``: two app instances of one home, each with its own account
    cache. A cookie logged out (or an account deactivated) through one is refused by the other on
    its next request, not a cache lifetime later."""
    first, second = create_app(home_settings), create_app(home_settings)
    ana = client(first, "ana")
    copy = TestClient(second, cookies=dict(ana.cookies))
    assert copy.get("/list").status_code == 200  # the second worker has ana's account cached now
    r = ana.post("/logout", data={"csrf": csrf_of(ana.get("/list").text)}, follow_redirects=False)
    assert r.status_code == 303
    gone = copy.get("/list", follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"].startswith("/login")

    ana2 = TestClient(second)
    assert login(ana2, "ana").status_code == 303
    assert ana2.get("/list").status_code == 200  # cached in the second worker
    sue = client(first, "sue")
    token = csrf_of(sue.get("/users").text)
    r = sue.post("/users", data={"csrf": token, "action": "deactivate", "username": "ana"}, follow_redirects=False)
    assert r.status_code == 303
    gone = ana2.get("/list", follow_redirects=False)
    assert gone.status_code == 303 and gone.headers["location"].startswith("/login")


def test_a_served_worker_loads_the_newest_days_list_views_before_its_first_request(home_settings, monkeypatch) -> None:
    """Each worker process of ``riskpipe serve`` holds its own list views: a worker builds the
    newest day's at start (lifespan, before it accepts connections), so no analyst's first page
    waits for a 4 M-row build in a worker the others had not warmed."""
    app = create_app(home_settings)
    data = app.state.data
    built: list[tuple] = []
    real = data._days.get_or_compute

    def spy(key, compute):
        def build():
            built.append(key[:2])
            return compute()

        return real(key, build)

    monkeypatch.setattr(data._days, "get_or_compute", spy)
    with TestClient(app) as c:  # runs the app's lifespan, as uvicorn does
        assert sorted(built) == [(DAY, "all"), (DAY, "targets")]  # each built once
        built.clear()
        assert login(c, "ana").status_code == 303
        assert c.get("/list?view=all").status_code == 200
    assert data._days.peek((DAY, "all", *data.day_version(DAY))) is not None  # the warmed view served it
