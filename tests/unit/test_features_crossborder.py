from __future__ import annotations

import math
from datetime import UTC, date, datetime

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.features import build_features
from riskpipe.features import crossborder as X
from riskpipe.features.testing import raw_frame, write_raw_day
from riskpipe.store import Layout, write_parquet_atomic

D = date(2026, 3, 10)


def partner(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([{c: r.get(c) for c in S.PARTNER_SCHEMA} for r in rows], schema=S.PARTNER_SCHEMA, orient="row")


def write_partner(lay: Layout, day: date, rows: list[dict]) -> None:
    write_parquet_atomic(partner(rows), lay.raw_partner_day(day) / "part-0.parquet")


def at(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, 12, tzinfo=UTC)


def test_partner_presence_mismatches_and_aeo(tmp_path):
    lay = Layout(tmp_path)
    mx = {
        S.COUNTRY_OF_ORIGIN: "MX",
        S.SHIPPER_COUNTRY: "MX",
        S.MODE: "truck",
        S.DECLARED_VALUE: 99.0,
        S.GROSS_WEIGHT_KG: 10.0,
        S.DESCRIPTION: "leather boots",
    }
    write_raw_day(
        lay,
        D,
        [
            {**mx, S.SHIPMENT_ID: "A"},  # partner agrees
            {**mx, S.SHIPMENT_ID: "B"},  # partner: value x2, weight x2, other words
            {**mx, S.SHIPMENT_ID: "C"},  # expected, missing
            {S.SHIPMENT_ID: "D", S.COUNTRY_OF_ORIGIN: "CN", S.EXPORT_COUNTRY: "MX"},  # transshipped via MX, missing
            {S.SHIPMENT_ID: "E"},  # CN: not expected
            {**mx, S.SHIPMENT_ID: "F"},  # declared after the day: not known yet
        ],
    )
    base = {S.EXPORT_COUNTRY: "MX", S.EXPORTER_NAME: "x"}
    write_partner(
        lay,
        date(2026, 3, 8),
        [
            {
                **base,
                S.SHIPMENT_ID: "A",
                S.EXPORTER_AEO: True,
                S.PARTNER_DECLARED_VALUE_USD: 99.0,
                S.GROSS_WEIGHT_KG: 10.0,
                S.DESCRIPTION: "Boots, leather",
                S.DECLARED_AT: at(date(2026, 3, 8)),
            },
            {
                **base,
                S.SHIPMENT_ID: "B",
                S.EXPORTER_AEO: False,
                S.PARTNER_DECLARED_VALUE_USD: 199.0,
                S.GROSS_WEIGHT_KG: 20.0,
                S.DESCRIPTION: "ceramic pottery",
                S.DECLARED_AT: at(date(2026, 3, 8)),
            },
        ],
    )
    write_partner(
        lay,
        date(2026, 3, 11),
        [
            {
                **base,
                S.SHIPMENT_ID: "F",
                S.EXPORTER_AEO: True,
                S.PARTNER_DECLARED_VALUE_USD: 99.0,
                S.GROSS_WEIGHT_KG: 10.0,
                S.DESCRIPTION: "leather boots",
                S.DECLARED_AT: at(date(2026, 3, 11)),
            },
        ],
    )
    f = build_features(lay, D)
    assert f.get_column(S.SHIPMENT_ID).to_list() == list("ABCDEF")
    assert f.get_column(X.XB_PARTNER_EXPECTED).to_list() == [1, 1, 1, 1, 0, 1]
    assert f.get_column(X.XB_PARTNER_PRESENT).to_list() == [1, 1, 0, 0, 0, 0]
    assert f.get_column(X.XB_PARTNER_MISSING).to_list() == [0, 0, 1, 1, 0, 1]
    assert f.item(1, X.XB_VALUE_LOG_RATIO) == pytest.approx(math.log(100 / 200))
    assert f.get_column(X.XB_VALUE_MISMATCH).to_list() == [0, 1, 0, 0, 0, 0]
    assert f.get_column(X.XB_WEIGHT_MISMATCH).to_list() == [0, 1, 0, 0, 0, 0]
    assert f.get_column(X.XB_DESC_MISMATCH).to_list() == [0, 1, 0, 0, 0, 0]
    assert f.get_column(X.XB_EXPORTER_AEO).to_list() == [1, 0, None, None, None, None]
    assert f.get_column(X.ORIGIN_GROUP).to_list() == ["MX", "MX", "MX", "CN", "CN", "MX"]
    assert f.get_column(X.MODE).to_list()[0] == "truck"


def test_origin_groups_and_categoricals(tmp_path):
    rows = [{S.COUNTRY_OF_ORIGIN: c} for c in ("HK", "JP", "DE", "CO", "ZA", None)]
    no_partner = X.partner_for_day(Layout(tmp_path), D)
    f = X.add_crossborder(raw_frame(rows, D).lazy(), no_partner).collect().sort(S.SHIPMENT_ID)
    assert f.get_column(X.ORIGIN_GROUP).to_list() == ["HK", "asia", "europe", "americas", "other", "none"]
    assert f.schema[X.ORIGIN_GROUP] == X.OriginGroup
    assert f.schema[X.ENTRY_TYPE] == S.EntryType
