"""A served worker warms the newest day before it accepts connections (issue 16 point 5: the
stress figures): its listed targets' shipment-page parts and its list views' orders and port
filters are computed at start, so 20 analysts at once do not queue behind first requests. What is
per user (the user, the CSRF token, the outcomes, the access audit) stays each page's own."""

from __future__ import annotations

import os
import time
from datetime import date, timedelta

import polars as pl
from fastapi.testclient import TestClient

from riskpipe import lookup
from riskpipe import schema as S
from riskpipe.cases import CaseStore
from riskpipe.labels import LabelStore
from riskpipe.store import Layout, write_parquet_atomic
from riskpipe.web import shipment as shipment_mod
from riskpipe.web.app import create_app
from riskpipe.web.lists import ListQuery
from riskpipe.web.routes import listing

from .conftest import DAY, PREV, build_home, csrf_of, login, raw_rows


def _counting(monkeypatch, module, names: list[str]) -> list[int]:
    calls = [0]
    for name in names:
        real = getattr(module, name)

        def counting(*a, _real=real, **k):
            calls[0] += 1
            return _real(*a, **k)

        monkeypatch.setattr(module, name, counting)
    return calls


def test_a_worker_computes_its_listed_targets_pages_at_start_and_keeps_users_apart(tmp_path, monkeypatch) -> None:
    settings = build_home(tmp_path / "home")
    app = create_app(settings)
    with TestClient(app) as ana, TestClient(app) as sue:  # the lifespan (the warm-up) runs once
        reads = _counting(
            monkeypatch, shipment_mod, ["scan_raw_shipments", "scan_matching", "read_rows", "link_candidates"]
        )
        assert login(ana, "ana").status_code == 303 and login(sue, "sue").status_code == 303
        token_ana, token_sue = csrf_of(ana.get("/list").text), csrf_of(sue.get("/list").text)
        assert token_ana != token_sue
        for sid in ("S1", "S2", "S3"):  # every listed target
            page = ana.get(f"/shipment/{sid}?day={DAY.isoformat()}")
            assert page.status_code == 200 and f'value="{token_ana}"' in page.text
            assert token_sue not in page.text
        assert reads[0] == 0  # nothing read from the day's files at the request: computed at start
        other = sue.get(f"/shipment/S1?day={DAY.isoformat()}").text
        assert f'value="{token_sue}"' in other and token_ana not in other
        assert '<span class="who">sue (' in other and '<span class="who">ana (' not in other
        assert "&lt;script&gt;" in other and '<script>alert("x")' not in other  # escaped as ever
        # the outcomes are read on every page: one recorded after the warm-up shows at once
        LabelStore(settings.db_url).record_one("P1", PREV, "no_finding", "random", "ana", None, None)
        assert "no_finding" in ana.get(f"/shipment/S1?day={DAY.isoformat()}").text
    # every view is audited, per user, warmed or not
    log = CaseStore(settings.db_url).access_log(action="view_shipment")
    assert sorted((r["actor"], r["target"]) for r in log) == sorted(
        [("ana", "S1"), ("ana", "S2"), ("ana", "S3"), ("sue", "S1"), ("ana", "S1")]
    )


def test_a_worker_computes_its_list_orders_and_busiest_port_filters_at_start(tmp_path, monkeypatch) -> None:
    settings = build_home(tmp_path / "home")
    app = create_app(settings)
    data = app.state.data
    with TestClient(app) as c:
        df = data.day_frame(DAY, "all")
        computed: list[tuple] = []
        real = df.cache.get_or_compute

        def spy(key, compute):
            def counted():
                computed.append(key)
                return compute()

            return real(key, counted)

        monkeypatch.setattr(df.cache, "get_or_compute", spy)
        assert login(c, "ana").status_code == 303
        for url in (
            "/list?view=all&port=2720",  # the day's busiest port (two of its four shipments)
            "/list?view=all&port=4701&page=1",
            "/list?view=all&sort=rule_score&desc=1&page=3",
            "/list?view=all&sort=port_of_entry",
        ):
            assert c.get(url).status_code == 200
        assert computed == []  # each was computed before the first request
        # and their pages rendered (for any user: each page gets its session's CSRF token)
        renders = _counting(monkeypatch, listing, ["list_content"])
        sue = TestClient(app)
        assert login(sue, "sue").status_code == 303
        for client in (c, sue):
            for url in ("/list", f"/list?day={DAY.isoformat()}", "/list?view=all&page=1", "/list?view=all&port=2720"):
                page = client.get(url)
                assert page.status_code == 200
                assert page.text.count(f'value="{csrf_of(page.text)}"') >= 2  # the list's forms carry it
        assert csrf_of(c.get("/list").text) != csrf_of(sue.get("/list").text)
        assert renders[0] == 0
        # and the warmed answers are the ones computed afresh
        q = ListQuery(view="all", sort=S.RULE_SCORE, desc=True).normalised()
        got = [r[S.SHIPMENT_ID] for r in data.list_page(DAY, q).rows]
        want = (
            pl.read_parquet(data.scores_path(DAY))
            .sort([S.RULE_SCORE, S.RISK_SCORE], descending=[True, True])
            .get_column(S.SHIPMENT_ID)
            .to_list()
        )
        assert got == want


def test_raw_days_are_listed_again_only_when_the_store_changed(tmp_path, monkeypatch) -> None:
    """A shipment page asked the raw store for its days with a glob per partition (about 1 ms a
    page on 31 days): the listing is kept while the store's folders are unchanged."""
    settings = build_home(tmp_path / "home")
    layout = Layout(settings.home)
    old = time.time() - 60
    for p in [layout.raw_shipments, *layout.raw_shipments.iterdir()]:
        os.utime(p, (old, old))
    assert lookup.raw_days(layout) == layout.raw_days() == [PREV, DAY]
    globs = [0]
    real = type(layout.home).glob

    def counting(self, pattern):
        globs[0] += 1
        return real(self, pattern)

    monkeypatch.setattr(type(layout.home), "glob", counting)
    assert lookup.raw_days(layout) == [PREV, DAY] and globs[0] == 0
    monkeypatch.undo()
    new = DAY - timedelta(days=3)
    write_parquet_atomic(raw_rows(new, [{S.SHIPMENT_ID: "N1"}]), layout.raw_shipments_day(new) / "part-0.parquet")
    assert lookup.raw_days(layout) == layout.raw_days() == [new, PREV, DAY]
    empty = layout.raw_shipments_day(date(2025, 12, 1))
    empty.mkdir()  # a partition folder without a file yet (an ingest in progress) is no day
    assert lookup.raw_days(layout) == layout.raw_days() == [new, PREV, DAY]
