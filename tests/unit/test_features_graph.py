"""The graph family: earlier outcomes carried along shared identifiers, point in time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.features import FEATURE_COLUMNS, build_features, family_fires
from riskpipe.features import graph as G
from riskpipe.features.testing import write_raw_day
from riskpipe.store import Layout

D = date(2026, 3, 10)
IP = "203.0.113.7"


def day(k: int) -> date:
    return D - timedelta(days=k)


def labels(rows: list[tuple[str, date, str]], recorded_at: datetime | None = None) -> pl.DataFrame:
    frame = pl.DataFrame(
        [{S.SHIPMENT_ID: i, S.EXAM_DATE: d, S.OUTCOME: o, S.EXAM_REASON: "targeted"} for i, d, o in rows],
        schema={S.SHIPMENT_ID: pl.String, S.EXAM_DATE: pl.Date, S.OUTCOME: S.Outcome, S.EXAM_REASON: S.ExamReason},
    )
    if recorded_at is not None:
        frame = frame.with_columns(pl.lit(recorded_at, pl.Datetime("us", "UTC")).alias("recorded_at"))
    return frame


def sid(d: date, i: int) -> str:
    return f"S{d:%m%d}-{i:04d}"


def world(tmp_path) -> Layout:
    lay = Layout(tmp_path)
    # day(12): a parcel from IP, later found positive; a clean seller examined 20 times
    write_raw_day(
        lay,
        day(12),
        [{S.ACCOUNT_IP: IP, S.SELLER_ID: "bad", S.SHIPPER_NAME: "Bad Co"}]
        + [{S.SELLER_ID: "clean", S.SHIPPER_NAME: "Clean Co"}] * 20,
    )
    # other consignees than today's (raw_frame numbers "Person <i>, <i> Main St" from 0 each day)
    past = pl.read_parquet(lay.raw_shipments_day(day(12)) / "part-0.parquet").with_columns(
        (pl.lit("Past ") + pl.col(S.CONSIGNEE_NAME)).alias(S.CONSIGNEE_NAME),
        (pl.lit("past|") + pl.col(S.CONSIGNEE_ADDRESS_KEY)).alias(S.CONSIGNEE_ADDRESS_KEY),
    )
    past.write_parquet(lay.raw_shipments_day(day(12)) / "part-0.parquet")
    write_raw_day(
        lay,
        D,
        [
            {S.ACCOUNT_IP: IP, S.CONSIGNEE_PHONE: "617-555-0101"},  # 0: shares the IP (hop 1)
            {S.CONSIGNEE_PHONE: "617-555-0101"},  # 1: shares a phone with 0 (hop 2)
            {S.SELLER_ID: "clean", S.SHIPPER_NAME: "Clean Co"},  # 2: clean record
            {S.SELLER_ID: "bad", S.SHIPPER_NAME: "Other Co"},  # 3: seller with a finding
            {S.SELLER_ID: "never-seen", S.SHIPPER_NAME: "Fresh Co"},  # 4: unrelated
        ],
    )
    return lay


def outcomes(recorded_at: datetime | None = None) -> pl.DataFrame:
    rows = [(sid(day(12), 0), day(10), "fentanyl")]
    rows += [(sid(day(12), i), day(10), "no_finding") for i in range(1, 21)]
    rows += [(sid(D, 4), D, "fentanyl")]  # the row's own outcome (exam on D): never seen by D
    return labels(rows, recorded_at)


def test_graph_columns_are_registered():
    assert all(c in FEATURE_COLUMNS for c in G.COLUMNS)


def test_a_seizure_propagates_one_and_two_hops_with_readable_reasons(tmp_path):
    lay = world(tmp_path)
    f = build_features(lay, D, outcomes())
    r = {row[S.SHIPMENT_ID]: row for row in f.iter_rows(named=True)}
    assert r[sid(D, 0)][G.seized_days_col("account_ip")] == 10
    assert r[sid(D, 0)][G.LINK_SCORE] > 0
    assert r[sid(D, 1)][G.seized_days_col("account_ip")] is None
    assert r[sid(D, 1)][G.LINK_SCORE] == 0
    assert r[sid(D, 1)][G.HOP2_SCORE] > 0  # via today's parcel 0 (same phone)
    assert r[sid(D, 0)][G.HOP2_SCORE] == 0  # its own link does not count as a neighbour's
    assert r[sid(D, 3)][G.seized_days_col("seller")] == 10
    assert r[sid(D, 4)][G.LINK_SCORE] == 0 and r[sid(D, 4)][G.HOP2_SCORE] == 0
    assert r[sid(D, 4)][G.te_col("seller")] == pytest.approx(1.0)  # own outcome (exam on D) unseen
    text = f.select(S.SHIPMENT_ID, G.link_reason_text(D)).row(0, named=True)["graph_reason"]
    assert text == f"shares an account IP with a parcel seized on {day(10).isoformat()}"
    assert IP not in text
    fires = family_fires(f).get_column("graph").to_list()
    assert fires == [True, False, False, True, False]


def test_target_statistics_are_smoothed_and_count_clean_exams(tmp_path):
    lay = world(tmp_path)
    f = build_features(lay, D, outcomes())
    te = dict(zip(f[S.SHIPMENT_ID], f[G.te_col("seller")], strict=True))
    assert te[sid(D, 2)] < 1.0  # examined 20 times clean
    assert te[sid(D, 3)] > 1.0  # 1 of 1 positive
    assert te[sid(D, 4)] == pytest.approx(1.0)  # no evidence: the prior
    # smoothed: one finding does not make the seller certain
    prior = (1 + 1) / (21 + 2)
    assert te[sid(D, 3)] == pytest.approx((1 + G.TE_STRENGTH * prior) / (1 + G.TE_STRENGTH) / prior, rel=1e-5)


def test_an_outcome_recorded_after_the_cutoff_does_not_move_the_day(tmp_path):
    lay = world(tmp_path)
    late = build_features(lay, D, outcomes(recorded_at=datetime(D.year, D.month, D.day, 0, 0, 1, tzinfo=UTC)))
    early = build_features(lay, D, outcomes(recorded_at=datetime(D.year, D.month, D.day - 1, 23, 0, tzinfo=UTC)))
    none = build_features(lay, D, None)
    for c in G.COLUMNS:
        assert late.get_column(c).equals(none.get_column(c)), c
    assert early.get_column(G.seized_days_col("account_ip")).to_list()[0] == 10


def test_a_hub_identifier_carries_nothing(tmp_path):
    lay = Layout(tmp_path)
    ip2 = "198.51.100.9"
    write_raw_day(lay, day(3), [{S.ACCOUNT_IP: IP}, {S.ACCOUNT_IP: ip2}])
    cap = G.LINK_CAPS["account_ip"]
    write_raw_day(lay, D, [{S.ACCOUNT_IP: IP}] * (cap + 1) + [{S.ACCOUNT_IP: ip2}] * cap)
    lab = labels([(sid(day(3), 0), day(2), "precursor"), (sid(day(3), 1), day(2), "precursor")])
    days = build_features(lay, D, lab).get_column(G.seized_days_col("account_ip")).to_list()
    assert days == [None] * (cap + 1) + [2] * cap  # the hub links nothing, the capped group does
