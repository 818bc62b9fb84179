"""The shipment page's service time under load (issue 16 point 5): the parts read from immutable
published files (raw row, score, network, parties' past parcels, partner window) are read once
and kept while those files are unchanged; the outcomes, which change, are read on every page;
settled raw days are not listed again for each page."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import polars as pl

from riskpipe import lookup, search
from riskpipe import schema as S
from riskpipe.labels import LabelStore
from riskpipe.store import Layout, scan_raw_partner, write_parquet_atomic
from riskpipe.web import shipment as shipment_mod
from riskpipe.web.data import WorkbenchData

from .conftest import DAY, PREV, build_home, raw_rows


def _home(tmp_path):
    settings = build_home(tmp_path / "home")
    layout = Layout(settings.home)
    for i in range(2, 5):
        d = DAY - timedelta(days=i)
        rows = [{S.SHIPMENT_ID: f"H{i}a", S.CONSIGNEE_ADDRESS_KEY: "k1", S.CONSIGNEE_PHONE: "999"}]
        write_parquet_atomic(raw_rows(d, rows), layout.raw_shipments_day(d) / "part-0.parquet")
    return settings, layout


def _settle(layout: Layout) -> None:
    """Age the raw folders past the settle time (a coarse clock could hide a change made now)."""
    old = time.time() - 60
    for p in layout.raw_shipments.iterdir():
        os.utime(p, (old, old))


def _count(monkeypatch, module, name: str) -> list[int]:
    calls = [0]
    real = getattr(module, name)

    def counting(*a, **k):
        calls[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(module, name, counting)
    return calls


def test_a_shipment_opened_again_reads_no_file_but_its_outcomes(tmp_path, monkeypatch) -> None:
    settings, layout = _home(tmp_path)
    _settle(layout)
    store = LabelStore(settings.db_url)
    data = WorkbenchData(settings, reason_texts={})

    def page() -> tuple:
        m = data.manifest(DAY, "S1")
        s = data.score(DAY, "S1")
        h = data.party_history(DAY, m, lambda ids: store.current(shipment_ids=ids))
        n = data.network(DAY, m, (s or {}).get(S.NETWORK_ID))
        return m, s, h, n

    first = page()
    assert first[0][S.SHIPMENT_ID] == "S1" and first[1] is not None and first[2] and first[3]["shipments"]
    scans = _count(monkeypatch, shipment_mod, "scan_raw_shipments")
    matching = _count(monkeypatch, shipment_mod, "scan_matching")
    candidates = _count(monkeypatch, shipment_mod, "column_candidates")
    reads = _count(monkeypatch, pl, "scan_parquet")
    second = page()
    assert second == first
    assert (scans[0], matching[0], candidates[0], reads[0]) == (0, 0, 0, 0)  # nothing read again
    # the outcomes are not kept: one recorded since shows on the next page
    past = first[2][0][S.SHIPMENT_ID]
    store.record_one(past, DAY - timedelta(days=1), "no_finding", "random", "ana", None, None)
    again = data.party_history(DAY, data.manifest(DAY, "S1"), lambda ids: store.current(shipment_ids=ids))
    assert [r[S.OUTCOME] for r in again if r[S.SHIPMENT_ID] == past] == ["no_finding"]
    # a caller changing what it got does not change the next page
    got = data.manifest(DAY, "S1")
    got[S.SHIPMENT_ID] = "changed"
    assert data.manifest(DAY, "S1")[S.SHIPMENT_ID] == "S1"


def test_a_re_ingested_day_is_read_again(tmp_path) -> None:
    settings, layout = _home(tmp_path)
    data = WorkbenchData(settings, reason_texts={})
    assert data.manifest(DAY, "S1") is not None
    path = layout.raw_shipments_day(DAY) / "part-0.parquet"
    frame = pl.read_parquet(path).with_columns(pl.lit("changed").alias(S.DESCRIPTION))
    write_parquet_atomic(frame, path)
    assert data.manifest(DAY, "S1")[S.DESCRIPTION] == "changed"


def test_the_partner_window_is_read_once_for_many_shipments(tmp_path, monkeypatch) -> None:
    settings, layout = _home(tmp_path)
    data = WorkbenchData(settings, reason_texts={})
    extra = scan_raw_partner(layout).collect()
    later = extra.with_columns(
        pl.col(S.DECLARED_AT) + pl.duration(hours=1), pl.lit(999.0).alias(S.PARTNER_DECLARED_VALUE_USD)
    )
    write_parquet_atomic(later, layout.raw_partner_day(DAY - timedelta(days=2)) / "part-0.parquet")
    sids = extra.get_column(S.SHIPMENT_ID).to_list() + ["nope"]
    days = [DAY - timedelta(days=i) for i in range(shipment_mod.PARTNER_WINDOW_DAYS, -2, -1)]

    def old(sid: str):  # the page's scan before the window was kept
        f = scan_raw_partner(layout, days).filter(pl.col(S.SHIPMENT_ID) == sid).sort(S.DECLARED_AT).collect()
        return f.row(-1, named=True) if f.height else None

    want = [old(s) for s in sids]
    scans = _count(monkeypatch, shipment_mod, "scan_raw_partner")
    assert [data.partner(DAY, s) for s in sids] == want
    assert want[0][S.PARTNER_DECLARED_VALUE_USD] == 999.0 and want[-1] is None  # the latest declaration
    assert scans[0] == 1  # one read of the window for every shipment
    assert data.partner(PREV, sids[0]) is not None and scans[0] == 2  # another day, another window


def test_settled_days_are_not_listed_again_for_a_partys_history(tmp_path, monkeypatch) -> None:
    """A party's history looks at 30 days without look-up files: their folders were listed (and
    each file's footer key taken) again on every page, twice (the scan and the index check)."""
    settings, layout = _home(tmp_path)
    _settle(layout)
    days = sorted(d for d in layout.raw_days() if d < DAY)
    values = {S.CONSIGNEE_PHONE: "999"}
    cols = [S.SHIPMENT_ID, S.ARRIVAL_DATE, S.CONSIGNEE_PHONE]
    first = lookup.scan_matching(layout, days, values, cols)
    assert sorted(first.get_column(S.SHIPMENT_ID)) == ["H2a", "H3a", "H4a"]
    search.column_candidates(layout, days, values)
    listings = [0]
    real = type(layout.home).glob

    def counting(self, pattern):
        listings[0] += 1
        return real(self, pattern)

    monkeypatch.setattr(type(layout.home), "glob", counting)
    assert lookup.scan_matching(layout, days, values, cols).equals(first)
    search.column_candidates(layout, days, values)
    assert listings[0] == 0
    none = lookup.scan_matching(layout, days, {S.CONSIGNEE_PHONE: "000"}, cols)  # nothing: no listing either
    assert none.height == 0 and none.schema == first.schema and listings[0] == 0
    write_parquet_atomic(
        raw_rows(days[0], [{S.SHIPMENT_ID: "Z1", S.CONSIGNEE_PHONE: "999"}]),
        layout.raw_shipments_day(days[0]) / "part-1.parquet",
    )
    assert "Z1" in lookup.scan_matching(layout, days, values, cols).get_column(S.SHIPMENT_ID).to_list()
