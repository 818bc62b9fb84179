from __future__ import annotations

from datetime import date, timedelta

import polars as pl
from polars.testing import assert_frame_equal

from riskpipe import schema as S
from riskpipe.features import build_features, update_history
from riskpipe.features import history as H
from riskpipe.features.testing import raw_frame, write_raw_day
from riskpipe.store import Layout, write_parquet_atomic

D = date(2026, 3, 10)
ADDR = {S.CONSIGNEE_ADDRESS: "9 Pine Rd", S.CONSIGNEE_PHONE: "617-555-0100"}


def day(k: int) -> date:
    return D - timedelta(days=k)


def labels(rows: list[tuple[str, date, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        [{S.SHIPMENT_ID: i, S.EXAM_DATE: d, S.OUTCOME: o, S.EXAM_REASON: "targeted"} for i, d, o in rows],
        schema={S.SHIPMENT_ID: pl.String, S.EXAM_DATE: pl.Date, S.OUTCOME: S.Outcome, S.EXAM_REASON: S.ExamReason},
    )


def world(tmp_path) -> Layout:
    lay = Layout(tmp_path)
    # 1 day before: 2 parcels to the address from 2 shippers; 5 days before: 1 parcel;
    # 20 days before: 3 parcels from 1 shipper; 60 days before: 1 parcel (seller s1 first seen)
    write_raw_day(lay, day(1), [{**ADDR, S.SHIPPER_NAME: "A"}, {**ADDR, S.SHIPPER_NAME: "B"}])
    write_raw_day(lay, day(5), [{**ADDR, S.SHIPPER_NAME: "A"}])
    write_raw_day(lay, day(20), [{**ADDR, S.SHIPPER_NAME: "C"}] * 3)
    write_raw_day(lay, day(60), [{S.SHIPPER_NAME: "A", S.SELLER_ID: "s1"}])
    write_raw_day(lay, day(120), [{**ADDR}])  # beyond the 90-day lookback
    write_raw_day(
        lay,
        D,
        [
            {**ADDR, S.SHIPPER_NAME: "A", S.SELLER_ID: "s1"},
            {S.SHIPPER_NAME: "New Shipper", S.CONSIGNEE_ADDRESS: "1 Other St"},
        ],
    )
    return lay


def test_window_counts_first_seen(tmp_path):
    lay = world(tmp_path)
    f = build_features(lay, D).row(0, named=True)
    assert [f[H.parcels_col("cons_addr", w)] for w in H.WINDOWS] == [2, 3, 6, 6]
    # distinct shippers per day, summed over the window's days ("shipper-days")
    assert [f[H.shippers_col("cons_addr", w)] for w in H.WINDOWS] == [2, 3, 4, 4]
    assert [f[H.parcels_col("cons_phone", w)] for w in H.WINDOWS] == [2, 3, 6, 6]
    assert f[H.first_seen_col("shipper")] == 60  # shipper A|CN first seen 60 days ago
    assert f[H.first_seen_col("seller")] == 60
    assert f[H.first_seen_col("cons_addr")] == 20
    other = build_features(lay, D).row(1, named=True)
    assert other[H.first_seen_col("shipper")] == 0  # never seen: new
    assert other[H.parcels_col("cons_addr", 90)] == 0


def test_history_is_incremental_and_idempotent(tmp_path):
    lay = world(tmp_path)
    assert update_history(lay, day(1)) is True
    mtime = H.entities_path(lay, day(1)).stat().st_mtime_ns
    assert update_history(lay, day(1)) is False
    build_features(lay, D)
    assert H.entities_path(lay, day(1)).stat().st_mtime_ns == mtime
    assert H.entities_path(lay, day(60)).exists()
    assert not H.entities_path(lay, day(120)).exists()  # outside the lookback
    # the day's own aggregates are written as a by-product, equal to what update_history writes
    by_product = pl.read_parquet(H.entities_path(lay, D))
    H.entities_path(lay, D).unlink()
    assert update_history(lay, D) is True
    assert_frame_equal(pl.read_parquet(H.entities_path(lay, D)), by_product)


def test_history_is_recomputed_when_a_late_file_arrives(tmp_path):
    lay = world(tmp_path)
    assert build_features(lay, D).row(0, named=True)[H.parcels_col("cons_addr", 1)] == 2
    late = raw_frame([{**ADDR, S.SHIPMENT_ID: "LATE"}], day(1))
    write_parquet_atomic(late, lay.raw_shipments_day(day(1)) / "part-1.parquet")
    assert build_features(lay, D).row(0, named=True)[H.parcels_col("cons_addr", 1)] == 3


def test_prior_exams_and_positives_linked_to_parties(tmp_path):
    lay = world(tmp_path)
    lab = labels(
        [
            (f"S{day(20):%m%d}-0000", day(19), "precursor"),  # same address, positive
            (f"S{day(20):%m%d}-0001", day(19), "no_finding"),
            (f"S{day(60):%m%d}-0000", day(58), "fentanyl"),  # shipper A and seller s1, positive
            (f"S{day(1):%m%d}-0000", D, "pill_press"),  # exam on the day itself: not known yet
        ]
    )
    f = build_features(lay, D, lab).row(0, named=True)
    assert f[H.exams_col("cons_addr")] == 2
    assert f[H.positives_col("cons_addr")] == 1
    assert f[H.exams_col("shipper")] == 1  # day(20) parcels came from shipper C
    assert f[H.positives_col("shipper")] == 1
    assert f[H.positives_col("seller")] == 1
    assert f[H.positives_col("cons_phone")] == 1
    g = build_features(lay, D, lab).row(1, named=True)
    assert g[H.exams_col("cons_addr")] == 0


def test_window_counts_equal_when_history_days_are_read_in_chunks(tmp_path, monkeypatch):
    # one history day per chunk: sums across chunks equal the single-pass values
    monkeypatch.setattr(H, "_DAYS_PER_CHUNK", 1)
    lay = world(tmp_path)
    f = build_features(lay, D).row(0, named=True)
    assert [f[H.parcels_col("cons_addr", w)] for w in H.WINDOWS] == [2, 3, 6, 6]
    assert [f[H.shippers_col("cons_addr", w)] for w in H.WINDOWS] == [2, 3, 4, 4]
    assert f[H.first_seen_col("shipper")] == 60
    assert f[H.first_seen_col("cons_addr")] == 20
