"""Leakage test: the features of day D do not depend on anything that arrives after D."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
from polars.testing import assert_frame_equal

from riskpipe import schema as S
from riskpipe.features import FEATURE_COLUMNS, build_features
from riskpipe.features.testing import write_raw_day
from riskpipe.store import Layout, write_parquet_atomic

D = date(2026, 3, 10)


def rows(k: int) -> list[dict]:
    """A small day: shared addresses, a repeat shipper, MX trade, a precursor."""
    return [
        {S.CONSIGNEE_ADDRESS: "9 Pine Rd", S.SHIPPER_NAME: f"Shipper {k % 2}", S.CONSIGNEE_PHONE: "617-555-0100"},
        {S.CONSIGNEE_ADDRESS: "9 Pine Rd", S.SHIPPER_NAME: "Other", S.DESCRIPTION: "NPP CAS 39742-60-4"},
        {S.COUNTRY_OF_ORIGIN: "MX", S.SHIPPER_COUNTRY: "MX", S.SHIPMENT_ID: f"MX{k}", S.DECLARED_VALUE: 50.0 + k},
        {S.CONSIGNEE_ADDRESS: "1 Oak", S.SELLER_ID: "s1", S.HTS_CODE: "6109100012", S.DECLARED_VALUE: 10.0 * (k + 1)},
    ] + [{S.DECLARED_VALUE: float(v), S.GROSS_WEIGHT_KG: 0.5} for v in range(5, 30)]


def labels(days: list[date]) -> pl.DataFrame:
    out = [
        {S.SHIPMENT_ID: f"S{d:%m%d}-0001", S.EXAM_DATE: d + timedelta(days=1), S.OUTCOME: "precursor"} for d in days
    ] + [{S.SHIPMENT_ID: f"S{d:%m%d}-0003", S.EXAM_DATE: d, S.OUTCOME: "no_finding"} for d in days]
    return pl.DataFrame(out, schema={S.SHIPMENT_ID: pl.String, S.EXAM_DATE: pl.Date, S.OUTCOME: S.Outcome})


def partner(lay: Layout, d: date, k: int) -> None:
    frame = pl.DataFrame(
        [
            {
                S.SHIPMENT_ID: f"MX{k}",
                S.EXPORT_COUNTRY: "MX",
                S.EXPORTER_NAME: "e",
                S.EXPORTER_AEO: True,
                S.PARTNER_DECLARED_VALUE_USD: 50.0,
                S.GROSS_WEIGHT_KG: 1.0,
                S.DESCRIPTION: "T-shirt",
                S.DECLARED_AT: datetime(d.year, d.month, d.day, 9, tzinfo=UTC),
            }
        ],
        schema=S.PARTNER_SCHEMA,
    )
    write_parquet_atomic(frame, lay.raw_partner_day(d) / "part-0.parquet")


def make_home(path, last: int) -> Layout:
    lay = Layout(path)
    for k in range(-5, last + 1):
        d = D + timedelta(days=k)
        write_raw_day(lay, d, rows(k))
        partner(lay, d - timedelta(days=1), k)  # declared the day before arrival
    return lay


def test_features_of_a_day_ignore_later_days_and_labels(tmp_path):
    past_days = [D + timedelta(days=k) for k in range(-5, 0)]
    all_days = [D + timedelta(days=k) for k in range(-5, 4)]
    now = make_home(tmp_path / "now", 0)
    later = make_home(tmp_path / "later", 3)
    # the later home has scored later days first (history and label caches exist for them)
    build_features(later, D + timedelta(days=3), labels(all_days))
    known_then = labels(past_days).filter(pl.col(S.EXAM_DATE) < D)
    a = build_features(now, D, known_then)
    b = build_features(later, D, labels(all_days))
    assert a.height == 29
    assert_frame_equal(a, b)
    # the labels did matter (the test would catch a leak): an exam known before D shows
    assert a.get_column("hist_cons_addr_prior_positives").max() > 0
    # and a label of day D itself (exam_date == D) is not used
    c = build_features(now, D, labels(past_days + [D]))
    assert_frame_equal(a, c)


def test_output_columns_and_order(tmp_path):
    lay = make_home(tmp_path, 0)
    f = build_features(lay, D)
    assert f.columns == [S.SHIPMENT_ID, S.NETWORK_ID, *FEATURE_COLUMNS]
    assert f.get_column(S.SHIPMENT_ID).is_sorted()
    assert S.DESCRIPTION not in f.columns


def test_empty_day_gives_empty_frame_with_the_columns(tmp_path):
    lay = make_home(tmp_path, 0)
    f = build_features(lay, D + timedelta(days=30))
    assert f.height == 0
    assert f.columns == [S.SHIPMENT_ID, S.NETWORK_ID, *FEATURE_COLUMNS]
