"""The window table (``history/window/day=D.parquet``): the lookback summed once after the night
before, read by the night instead of the daily tables. Equal to what the night sums itself, when
built in full and when moved on one day at a time; stale (and not used) after a past day is
re-ingested; rebuilt by a rerun only when stale."""

from __future__ import annotations

import random
from datetime import date, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from riskpipe import schema as S
from riskpipe.features import build_features
from riskpipe.features import history as H
from riskpipe.features.testing import raw_frame, write_raw_day
from riskpipe.store import Layout, write_parquet_atomic

D = date(2026, 6, 1)
#: days before D with parcels: both sides of every window's edge (1, 7, 30, 90), of the bitmap's
#: two words (45 / 46), and beyond the lookback (91, 95)
AGOS = (1, 2, 3, 6, 7, 8, 9, 29, 30, 31, 32, 44, 45, 46, 47, 48, 88, 89, 90, 91, 92, 95)


def _rows(rng: random.Random, n: int) -> list[dict]:
    """``n`` parcels over a few repeated parties (so keys recur across days and windows)."""
    return [
        {
            S.CONSIGNEE_ADDRESS: f"{rng.randrange(6)} Pine Rd",
            S.CONSIGNEE_NAME: f"Person {rng.randrange(5)}",
            S.CONSIGNEE_PHONE: f"617-555-01{rng.randrange(4):02d}",
            S.SHIPPER_NAME: f"Shipper {rng.randrange(4)}",
            S.SELLER_ID: f"s{rng.randrange(5)}",
        }
        for _ in range(n)
    ]


def world(tmp_path, days_after: int = 0) -> Layout:
    """Raw days at ``AGOS`` before D (and D .. D + ``days_after``), 1-4 parcels each."""
    lay = Layout(tmp_path)
    rng = random.Random(3)
    for ago in AGOS:
        write_raw_day(lay, D - timedelta(days=ago), _rows(rng, rng.randrange(1, 5)))
    for k in range(days_after + 1):
        write_raw_day(lay, D + timedelta(days=k), _rows(rng, 4))
    return lay


def history_columns(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(S.SHIPMENT_ID, *H.COLUMNS)


def test_features_from_the_window_table_equal_the_summed_lookback(tmp_path, monkeypatch):
    lay = world(tmp_path)
    summed = build_features(lay, D)
    assert not H.window_path(lay, D).exists()  # the night does not build it: it is built after the night before
    assert H.update_window(lay, D) is True
    assert H.window_current(lay, D)
    used = []
    real = H._from_window
    monkeypatch.setattr(H, "_from_window", lambda *a: used.append(a[2]) or real(*a))
    from_table = build_features(lay, D)
    assert used  # the window table was read
    assert_frame_equal(from_table, summed)
    # the check has teeth: the windows saw parcels on both sides of each edge
    assert summed.select(pl.col(H.parcels_col("cons_addr", 90)).max()).item() > 0
    assert summed.select(pl.col(H.first_seen_col("shipper")).max()).item() > 45  # the bitmap's upper word


def test_parties_new_today_get_zeros_from_the_window_table_as_from_the_summed_lookback(tmp_path):
    """Today's rows are joined to the window table's rows of today's keys only: a party not in
    the lookback gets zero counts and a first-seen age of 0, as when the night sums the lookback."""
    lay = Layout(tmp_path)
    rng = random.Random(5)
    for ago in (1, 8, 40):
        write_raw_day(lay, D - timedelta(days=ago), _rows(rng, 3))
    newcomer = {
        S.CONSIGNEE_ADDRESS: "1 New Lane",
        S.CONSIGNEE_NAME: "Newcomer",
        S.CONSIGNEE_PHONE: "212-555-0000",
        S.SHIPPER_NAME: "New Shipper",
        S.SELLER_ID: "s-new",
    }
    write_raw_day(lay, D, [*_rows(rng, 3), newcomer])
    summed = build_features(lay, D)
    assert H.update_window(lay, D) and H.window_current(lay, D)
    assert_frame_equal(build_features(lay, D), summed)
    new = summed.filter(pl.col(H.parcels_col("cons_addr", 90)) == 0)
    assert new.height >= 1  # the newcomer (and any address the random rows did not repeat)
    assert new.get_column(H.first_seen_col("cons_addr")).to_list() == [0] * new.height
    assert summed.filter(pl.col(H.first_seen_col("shipper")) == 0).height >= 1
    assert summed.get_column(H.parcels_col("cons_addr", 90)).max() > 0


def test_window_moved_on_day_by_day_equals_the_one_summed_in_full(tmp_path):
    lay = world(tmp_path, days_after=5)
    first = D - timedelta(days=40)  # from the first window (full) on, every later one is moved on
    assert H.update_window(lay, first)
    day = first + timedelta(days=1)
    while day <= D + timedelta(days=6):
        assert H.update_window(lay, day) is True
        moved = pl.read_parquet(H.window_path(lay, day))
        full = H.build_window(lay, day, H.lookback_days(lay, day))
        assert_frame_equal(moved, full, check_row_order=True)
        day += timedelta(days=1)


def test_window_moved_on_is_used_and_equals_the_summed_features(tmp_path):
    lay = world(tmp_path, days_after=3)
    H.update_window(lay, D)
    for k in range(1, 4):
        d = D + timedelta(days=k)
        summed = build_features(lay, d)
        H.update_window(lay, d)
        assert H.window_current(lay, d)
        assert_frame_equal(build_features(lay, d), summed)


def test_past_day_reingested_makes_the_window_stale_and_a_rerun_rebuilds_it(tmp_path):
    lay = world(tmp_path)
    assert H.update_window(lay, D) is True
    assert H.update_window(lay, D) is False  # a rerun: current, left alone
    before = build_features(lay, D)
    # a late file for a past day (3 days before): the table no longer holds that day as it is
    late = raw_frame([{S.CONSIGNEE_ADDRESS: "0 Pine Rd", S.SHIPMENT_ID: "LATE-1"}], D - timedelta(days=3))
    write_parquet_atomic(late, lay.raw_shipments_day(D - timedelta(days=3)) / "part-1.parquet")
    assert not H.window_current(lay, D)
    after = build_features(lay, D)  # summed from the daily tables: the late parcel counted
    col = H.parcels_col("cons_addr", 7)
    assert after[col].sum() > before[col].sum()
    assert H.update_window(lay, D) is True
    assert H.window_current(lay, D)
    assert_frame_equal(build_features(lay, D), after)
    assert_frame_equal(pl.read_parquet(H.window_path(lay, D)), H.build_window(lay, D, H.lookback_days(lay, D)))


def test_a_new_past_day_makes_the_window_stale(tmp_path):
    lay = world(tmp_path)
    H.update_window(lay, D)
    write_raw_day(lay, D - timedelta(days=4), _rows(random.Random(9), 2))  # a day with no parcels before
    assert not H.window_current(lay, D)


def test_history_step_writes_the_next_nights_window(tmp_path):
    from riskpipe.nightly import history_step

    lay = world(tmp_path, days_after=1)
    history_step(lay, D)
    assert H.window_current(lay, D + timedelta(days=1))


@pytest.mark.parametrize("ago", [1, 45, 46, 90])
def test_first_seen_age_from_the_bitmap(tmp_path, ago):
    lay = Layout(tmp_path)
    write_raw_day(lay, D - timedelta(days=ago), [{S.SHIPPER_NAME: "Only"}])
    write_raw_day(lay, D, [{S.SHIPPER_NAME: "Only"}])
    summed = build_features(lay, D)
    H.update_window(lay, D)
    from_table = build_features(lay, D)
    assert from_table[H.first_seen_col("shipper")].to_list() == [ago]
    assert_frame_equal(from_table, summed)


def test_window_summed_in_parts_of_the_key_space_equals_one_pass(tmp_path, monkeypatch):
    lay = world(tmp_path)
    days = H.lookback_days(lay, D)
    H.ensure_history(lay, D)
    one = H.build_window(lay, D, days)
    monkeypatch.setattr(H, "_WINDOW_PART_ROWS", 7)  # several parts
    assert_frame_equal(H.build_window(lay, D, days), one)
    assert one.height > 10


def test_old_window_tables_are_removed(tmp_path):
    lay = world(tmp_path, days_after=3)
    for k in range(4):
        H.update_window(lay, D + timedelta(days=k))
    kept = sorted(p.name for p in (lay.history / "window").iterdir())
    want = [f"day={(D + timedelta(days=k)).isoformat()}.{ext}" for k in (2, 3) for ext in ("json", "parquet")]
    assert kept == sorted(want)
    assert H.window_current(lay, D + timedelta(days=3))
