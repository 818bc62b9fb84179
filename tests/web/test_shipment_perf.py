"""The shipment page under load (issue 16): the parties' history and the network looked up
through the per-day identifier indexes equal the full scans they replace, outcomes are read for the rows shown only,
and the raw store is listed once per scan, not once per day."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.labels import LabelStore
from riskpipe.search import index_path
from riskpipe.store import Layout, scan_raw_shipments, write_parquet_atomic
from riskpipe.web.data import WorkbenchData
from riskpipe.web.shipment import HISTORY_COLUMNS, HISTORY_WINDOW_DAYS, LINK_WORDS

from .conftest import DAY, PREV, build_home, raw_rows


def old_history(layout: Layout, day: date, manifest: dict[str, Any], labels: pl.DataFrame) -> list[dict[str, Any]]:
    """The computation the page used before the indexes: scan every day of the window."""
    conds = [pl.col(c) == manifest[c] for c in HISTORY_COLUMNS if manifest.get(c)]
    days = [d for d in layout.raw_days() if day - timedelta(days=HISTORY_WINDOW_DAYS) <= d < day]
    cols = [S.SHIPMENT_ID, S.ARRIVAL_DATE, S.DESCRIPTION, S.DECLARED_VALUE_USD, S.COUNTRY_OF_ORIGIN, *HISTORY_COLUMNS]
    f = (
        scan_raw_shipments(layout, days)
        .select(cols)
        .filter(pl.any_horizontal(conds))
        .sort(S.ARRIVAL_DATE, S.SHIPMENT_ID, descending=[True, False])
        .head(200)
        .collect()
    )
    if f.height == 0:
        return []
    f = f.with_columns(
        pl.concat_str(
            [pl.when(pl.col(c) == manifest[c]).then(pl.lit(LINK_WORDS[c])) for c in HISTORY_COLUMNS if manifest.get(c)],
            separator=", ",
            ignore_nulls=True,
        ).alias("linked_by")
    )
    f = f.join(
        labels.select(
            S.SHIPMENT_ID, S.EXAM_DATE, pl.col(S.OUTCOME).cast(pl.String), pl.col(S.EXAM_REASON).cast(pl.String)
        ),
        on=S.SHIPMENT_ID,
        how="left",
    )
    return f.sort(S.ARRIVAL_DATE, S.SHIPMENT_ID, descending=[True, False]).to_dicts()


def _home(tmp_path):
    """The conftest home plus earlier days holding exact and near matches (same identifier after
    normalisation, different as typed: not the same party for the page) and outcomes."""
    settings = build_home(tmp_path / "home")
    layout = Layout(settings.home)
    for i in range(2, 6):
        d = DAY - timedelta(days=i)
        rows = [
            {S.SHIPMENT_ID: f"H{i}a", S.CONSIGNEE_ADDRESS_KEY: "k1", S.CONSIGNEE_PHONE: "999", S.SHIPPER_NAME: "A Co"},
            {
                S.SHIPMENT_ID: f"H{i}b",
                S.CONSIGNEE_ADDRESS_KEY: "K1",
                S.CONSIGNEE_PHONE: "(555) 0101",
                S.SHIPPER_NAME: "SHENZHEN TRADING CO.",
            },  # near matches: not linked
            {
                S.SHIPMENT_ID: f"H{i}c",
                S.CONSIGNEE_ADDRESS_KEY: "zz",
                S.CONSIGNEE_PHONE: "555-0101",
                S.SHIPPER_NAME: "Other Co",
            },
            {S.SHIPMENT_ID: f"H{i}d", S.CONSIGNEE_ADDRESS_KEY: "yy", S.SHIPPER_NAME: "Other Co"},
        ]
        write_parquet_atomic(raw_rows(d, rows), layout.raw_shipments_day(d) / "part-0.parquet")
    store = LabelStore(settings.db_url)
    store.record_one("H3a", DAY - timedelta(days=1), "fentanyl", "targeted", "ana", None, None)
    store.record_one("H4d", DAY - timedelta(days=1), "no_finding", "random", "ana", None, None)
    return settings, layout, store


def test_history_and_network_through_indexes_equal_the_full_scan(tmp_path) -> None:
    settings, layout, store = _home(tmp_path)
    data = WorkbenchData(settings, reason_texts={})
    manifests = [
        data.manifest(DAY, "S1"),
        data.manifest(DAY, "S3"),
        {**data.manifest(DAY, "S4"), S.CONSIGNEE_PHONE: "n/a"},
    ]
    expected = [old_history(layout, DAY, m, store.current()) for m in manifests]
    assert len(expected[0]) == 9 and {r[S.SHIPMENT_ID] for r in expected[0]} >= {"P1", "H2a", "H3c"}
    assert not any(r[S.SHIPMENT_ID].endswith("b") for r in expected[0])  # near matches stay out
    assert any(r[S.OUTCOME] == "fentanyl" for r in expected[0])

    def page(m):
        return data.party_history(DAY, m, lambda ids: store.current(shipment_ids=ids))

    assert [page(m) for m in manifests] == expected  # no index yet: every day scanned
    nets = [data.network(DAY, m, n) for m in manifests for n in (None, "N1")]
    assert sum(len(n["shipments"]) for n in nets) >= 4  # the graphs are not empty
    index_path(layout, PREV)
    index_path(layout, DAY - timedelta(days=3))
    assert [page(m) for m in manifests] == expected  # some days indexed
    for d in layout.raw_days():
        index_path(layout, d)
    assert [page(m) for m in manifests] == expected  # every day indexed
    assert [data.network(DAY, m, n) for m in manifests for n in (None, "N1")] == nets  # the day's index
    from riskpipe.search import column_candidates

    window = [d for d in layout.raw_days() if d < DAY]
    pairs, full = column_candidates(layout, window, {c: manifests[0][c] for c in HISTORY_COLUMNS})
    assert full == [] and {"P1", "H2a", "H2b", "H2c"} <= set(
        pairs.collect().get_column(S.SHIPMENT_ID)
    )  # looked up, not scanned
    assert [data.party_history(DAY, m, store.current()) for m in manifests] == expected  # a frame still works


def test_outcomes_are_read_for_the_rows_shown_only(tmp_path) -> None:
    settings, _layout, store = _home(tmp_path)
    assert store.current().height == 2
    only = store.current(shipment_ids=["H3a", "nope"])
    assert only.get_column(S.SHIPMENT_ID).to_list() == ["H3a"] and only.schema == store.current().schema
    asked: list[list[str]] = []
    data = WorkbenchData(settings, reason_texts={})
    data.party_history(
        DAY, data.manifest(DAY, "S1"), lambda ids: asked.append(sorted(ids)) or store.current(shipment_ids=ids)
    )
    assert len(asked) == 1 and "P1" in asked[0] and "H4d" not in asked[0]


def test_a_raw_scan_lists_the_store_once(tmp_path, monkeypatch) -> None:
    """``scan_raw_shipments`` listed the raw store once per wanted day (60 ms of a page)."""
    _settings, layout, _store = _home(tmp_path)
    calls = [0]
    real = Layout.raw_days

    def counting(self):
        calls[0] += 1
        return real(self)

    monkeypatch.setattr(Layout, "raw_days", counting)
    days = [DAY - timedelta(days=i) for i in range(60)]
    assert scan_raw_shipments(layout, days).select(pl.len()).collect().item() == 4 + 1 + 16
    assert calls[0] == 1
