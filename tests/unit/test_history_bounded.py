"""The daily history tables and the window table in bounded memory (issue 16 point 4): written a
slice of the raw day / an (entity, key range) of the inputs at a time, equal to what the whole-day
code wrote (the originals are copied below), and no read of the raw day or of a history table
returns more than a slice of it."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.features import history as H
from riskpipe.features import value
from riskpipe.features.keys import ENTITY_KEYS, key_col, with_keys
from riskpipe.features.partials import key_range
from riskpipe.features.testing import raw_frame, write_raw_day
from riskpipe.store import Layout, scan_raw_shipments, write_parquet_atomic

D = date(2026, 6, 1)
ENTITY, KEY, PARCELS, SHIPPERS = H.ENTITY, H.KEY, H.PARCELS, H.SHIPPERS


# ---------------------------------------------------------------------------------------------
# the original whole-day code (before issue 16 point 4), the reference
# ---------------------------------------------------------------------------------------------
def original_day_tables(layout: Layout, day: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(entities, headings) as the original ``update_history`` wrote them: the whole day's keys
    collected, then grouped (:func:`H.write_day_history`)."""
    raw = scan_raw_shipments(layout, [day])
    prepared = with_keys(raw, ENTITY_KEYS).with_columns(value.heading_expr(), *value.log_value_exprs())
    cols = [key_col(e) for e in ENTITY_KEYS] + [value.HEADING, value.LOG_VPK, value.LOG_VPP]
    frame = prepared.select(cols).collect()
    ent = H.day_entity_aggregates(frame).collect().sort(ENTITY, KEY)
    heads = value.heading_aggregates(frame.lazy()).collect().sort(value.HEADING)
    return ent, heads


def _original_day_rows(layout: Layout, d: date, ago: int) -> pl.LazyFrame:
    lo = (1 << (ago - 1)) if ago <= H._HALF else 0
    hi = (1 << (ago - 1 - H._HALF)) if ago > H._HALF else 0
    return pl.scan_parquet(H.entities_path(layout, d)).select(
        ENTITY,
        KEY,
        *((pl.col(PARCELS) if ago <= w else pl.lit(0, pl.UInt32)).alias(f"p{w}") for w in H.WINDOWS),
        *((pl.col(SHIPPERS) if ago <= w else pl.lit(0, pl.UInt32)).alias(f"s{w}") for w in H.WINDOWS),
        pl.lit(lo, pl.UInt64).alias(H.SEEN_LO),
        pl.lit(hi, pl.UInt64).alias(H.SEEN_HI),
    )


def original_build_window(layout: Layout, day: date, days: list[date]) -> pl.DataFrame:
    if not days:
        return pl.DataFrame(schema=H._WINDOW_SCHEMA)
    rows = pl.concat([_original_day_rows(layout, d, (day - d).days) for d in days])
    sums = rows.group_by(ENTITY, KEY).agg(
        *(pl.col(c).sum().cast(pl.UInt32) for c in H._SUMS), pl.col(H.SEEN_LO).sum(), pl.col(H.SEEN_HI).sum()
    )
    return sums.collect(engine="streaming").sort(ENTITY, KEY)


def original_advance(layout: Layout, prev: pl.DataFrame, day: date, prev_days: list[date]) -> pl.DataFrame:
    new_day = day - timedelta(days=1)
    held = set(prev_days)
    out = prev.lazy()
    for w in H.WINDOWS:
        gone = new_day - timedelta(days=w)
        if gone in held:
            drop = pl.scan_parquet(H.entities_path(layout, gone)).select(
                ENTITY, KEY, pl.col(PARCELS).alias(f"_dp{w}"), pl.col(SHIPPERS).alias(f"_ds{w}")
            )
            out = out.join(drop, on=[ENTITY, KEY], how="left")
        else:
            out = out.with_columns(pl.lit(None, pl.UInt32).alias(f"_dp{w}"), pl.lit(None, pl.UInt32).alias(f"_ds{w}"))
    if H.entities_path(layout, new_day).exists() and new_day in set(layout.raw_days()):
        today = pl.scan_parquet(H.entities_path(layout, new_day)).select(
            ENTITY,
            KEY,
            pl.col(PARCELS).alias("_np"),
            pl.col(SHIPPERS).alias("_ns"),
            pl.lit(1, pl.UInt64).alias("_seen"),
        )
        out = out.join(today, on=[ENTITY, KEY], how="full", coalesce=True)
    else:
        out = out.with_columns(
            pl.lit(None, pl.UInt32).alias("_np"),
            pl.lit(None, pl.UInt32).alias("_ns"),
            pl.lit(None, pl.UInt64).alias("_seen"),
        )
    z32, z64 = pl.lit(0, pl.UInt32), pl.lit(0, pl.UInt64)
    top = pl.lit(1 << (H._HALF - 1), pl.UInt64)
    lo, hi = pl.col(H.SEEN_LO).fill_null(z64), pl.col(H.SEEN_HI).fill_null(z64)

    def moved(m: str, w: int, add: str) -> pl.Expr:
        return (
            pl.col(f"{m}{w}").fill_null(z32).cast(pl.Int64)
            - pl.col(f"_d{m}{w}").fill_null(z32).cast(pl.Int64)
            + pl.col(add).fill_null(z32).cast(pl.Int64)
        ).cast(pl.UInt32)

    out = out.select(
        ENTITY,
        KEY,
        *(moved("p", w, "_np").alias(f"p{w}") for w in H.WINDOWS),
        *(moved("s", w, "_ns").alias(f"s{w}") for w in H.WINDOWS),
        ((lo % top) * 2 + pl.col("_seen").fill_null(z64)).alias(H.SEEN_LO),
        ((hi % top) * 2 + lo // top).alias(H.SEEN_HI),
    ).filter((pl.col(H.SEEN_LO) > 0) | (pl.col(H.SEEN_HI) > 0))
    return out.collect().sort(ENTITY, KEY)


# ---------------------------------------------------------------------------------------------
# the daily tables
# ---------------------------------------------------------------------------------------------
def _parcel(rng: random.Random) -> dict:
    """A parcel from a pool of parties; party fields missing now and then (null keys), headings
    missing or too short, weights and pieces zero (null log values)."""
    maybe = lambda v, p=0.15: None if rng.random() < p else v  # noqa: E731
    return {
        S.CONSIGNEE_ADDRESS_KEY: maybe(f"{rng.randrange(90)} pine rd|02101"),
        S.CONSIGNEE_NAME: maybe(f"Person {rng.randrange(70)}"),
        S.CONSIGNEE_PHONE: maybe(f"617-555-{rng.randrange(60):04d}"),
        S.SHIPPER_NAME: maybe(f"Shipper {rng.randrange(25)}", 0.1),
        S.SELLER_ID: maybe(f"s{rng.randrange(40)}", 0.3),
        S.HTS_CODE: rng.choice(["6109100012", "3003900000", "8471300100", "12", None, "2933.39.9100"]),
        S.DECLARED_VALUE: round(rng.uniform(1, 900), 2),
        S.GROSS_WEIGHT_KG: rng.choice([0.0, 0.2, 1.5, 3.0]),
        S.PIECE_COUNT: rng.choice([0, 1, 2, 7]),
    }


def raw_world(tmp_path: Path, rows: int = 400) -> Layout:
    """Day D in three raw files (as ingest leaves a day landed in several files)."""
    lay = Layout(tmp_path)
    rng = random.Random(7)
    parcels = [_parcel(rng) for _ in range(rows)]
    frame = raw_frame(parcels, D).with_columns(
        pl.format("S{}", pl.int_range(pl.len())).alias(S.SHIPMENT_ID)  # unique across the files
    )
    third = rows // 3
    for i, piece in enumerate((frame[:third], frame[third : 2 * third], frame[2 * third :])):
        write_parquet_atomic(piece, lay.raw_shipments_day(D) / f"part-{i}.parquet")
    return lay


@pytest.mark.parametrize(("chunk", "part_rows"), [(7, 40), (64, 130), (250_000, 2_000_000)])
def test_day_tables_written_in_chunks_equal_the_whole_day(tmp_path, monkeypatch, chunk, part_rows):
    lay = raw_world(tmp_path)
    monkeypatch.setattr(H, "_CHUNK_ROWS", chunk)
    monkeypatch.setattr(H, "_DAY_PART_ROWS", part_rows)  # 400 rows: 10, 4 and 1 key ranges
    want_ent, want_heads = original_day_tables(lay, D)
    assert H.update_history(lay, D) is True
    ent = pl.read_parquet(H.entities_path(lay, D))
    assert ent.equals(want_ent)  # same rows, order and types
    assert ent.schema == want_ent.schema
    # the check has teeth: every entity, keys with several parcels and several shippers
    assert ent.get_column(ENTITY).unique().sort().to_list() == list(range(len(ENTITY_KEYS)))
    assert ent.get_column(PARCELS).max() > 3 and ent.get_column(SHIPPERS).max() > 1
    heads = pl.read_parquet(value.headings_path(lay, D))
    ints = [value.HEADING, "n_vpk", "n_vpp"]
    assert heads.select(ints).equals(want_heads.select(ints))
    # the sums are added chunk by chunk as integers: equal to the bit (a float sum was not)
    assert heads.equals(want_heads)
    assert heads.height >= 3
    assert not list(lay.history.glob(".spill-*"))  # the spilled pairs are gone


def test_day_tables_of_an_entity_missing_all_day(tmp_path, monkeypatch):
    """No seller at all that day, and a day with no rows: the tables equal the whole-day ones."""
    lay = Layout(tmp_path)
    rng = random.Random(2)
    write_raw_day(lay, D, [{**_parcel(rng), S.SELLER_ID: None, S.SELLER_NAME: None} for _ in range(50)])
    write_raw_day(lay, D - timedelta(days=1), [])
    monkeypatch.setattr(H, "_CHUNK_ROWS", 9)
    monkeypatch.setattr(H, "_DAY_PART_ROWS", 20)
    for d in (D, D - timedelta(days=1)):
        want_ent, want_heads = original_day_tables(lay, d)
        assert H.update_history(lay, d) is True
        assert pl.read_parquet(H.entities_path(lay, d)).equals(want_ent)
        assert pl.read_parquet(value.headings_path(lay, d)).equals(want_heads)
    seller = list(ENTITY_KEYS).index("seller")
    ent = pl.read_parquet(H.entities_path(lay, D))
    assert seller not in ent.get_column(ENTITY).to_list() and ent.height > 0


def watch_read_heights(monkeypatch) -> list[int]:
    """The heights of every frame collected or read from Parquet from now on (undone with
    ``monkeypatch.undo()``)."""
    heights: list[int] = []
    real_collect, real_read = pl.LazyFrame.collect, pl.read_parquet

    def collect(self, *a, **kw):
        out = real_collect(self, *a, **kw)
        heights.append(out.height)
        return out

    def read_parquet(source, *a, **kw):
        out = real_read(source, *a, **kw)
        heights.append(out.height)
        return out

    monkeypatch.setattr(pl.LazyFrame, "collect", collect)
    monkeypatch.setattr(pl, "read_parquet", read_parquet)
    return heights


def test_update_history_never_collects_more_than_a_chunk_of_the_raw_day(tmp_path, monkeypatch):
    """The raw day is read a slice at a time: no collect or read returns more than
    ``_CHUNK_ROWS`` rows (the whole day's keys held 0.98 GB at 4 M rows)."""
    lay = raw_world(tmp_path)
    monkeypatch.setattr(H, "_CHUNK_ROWS", 16, raising=False)
    monkeypatch.setattr(H, "_DAY_PART_ROWS", 100, raising=False)
    want_ent, _ = original_day_tables(lay, D)
    heights = watch_read_heights(monkeypatch)
    assert H.update_history(lay, D) is True
    monkeypatch.undo()
    assert heights and max(heights) <= 16, f"a read of {max(heights)} rows (day: 400)"
    assert pl.read_parquet(H.entities_path(lay, D)).equals(want_ent)


# ---------------------------------------------------------------------------------------------
# the window table
# ---------------------------------------------------------------------------------------------
#: keys on the edges of the 64-bit key space (in every other day's tables)
EDGE_KEYS = [0, 1, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]
#: keys on the edges of the key ranges of 2 to 16 parts (a sample in each day's tables)
RANGE_EDGES = sorted({key_range(k, p)[0] + d for p in range(2, 17) for k in range(1, p) for d in (-1, 0)})
#: days (before D) of the crafted daily tables: both sides of the windows' and bitmap words'
#: edges; 4, 5 and 10 missing from the lookback
CRAFTED_AGOS = (1, 2, 3, 6, 7, 8, 9, 29, 30, 31, 44, 45, 46, 47, 89, 90, 91, 95)
#: days after D that have tables (D + 2 has none: a night without parcels)
CRAFTED_AFTER = (0, 1, 3, 4)


def crafted_world(tmp_path: Path) -> Layout:
    """Daily entity tables built directly (keys at the range edges, 0 and 2**64 - 1 among
    them), each day with a one-row raw partition so that it is in the lookback; the seller
    absent on some days, the phone on D."""
    lay = Layout(tmp_path)
    rng = random.Random(13)
    pool = [rng.getrandbits(64) for _ in range(150)]
    days = [D - timedelta(days=a) for a in CRAFTED_AGOS] + [D + timedelta(days=k) for k in CRAFTED_AFTER]
    for d in days:
        write_raw_day(lay, d, [{}])
        parts = []
        for code in range(len(ENTITY_KEYS)):
            if (code == 4 and d.day % 3 == 0) or (code == 2 and d == D):
                continue
            keys = rng.sample(pool, rng.randrange(20, 60)) + rng.sample(RANGE_EDGES, 25)
            keys += EDGE_KEYS if d.day % 2 else []
            keys = sorted(set(keys))
            parcels = [rng.randrange(1, 6) for _ in keys]
            parts.append(
                pl.DataFrame(
                    {
                        ENTITY: [code] * len(keys),
                        KEY: keys,
                        PARCELS: parcels,
                        SHIPPERS: [rng.randrange(1, p + 1) for p in parcels],
                    },
                    schema=H._ENTITY_SCHEMA,
                )
            )
        table = pl.concat(parts).sort(ENTITY, KEY)
        path = H.entities_path(lay, d)
        path.parent.mkdir(parents=True, exist_ok=True)
        table.write_parquet(path, row_group_size=16)  # small row groups: the ranges skip most
    return lay


@pytest.mark.parametrize("part_rows", [150, 20_000_000])
def test_window_built_and_moved_on_in_ranges_equals_the_original(tmp_path, monkeypatch, part_rows):
    lay = crafted_world(tmp_path)
    monkeypatch.setattr(H, "_WINDOW_PART_ROWS", part_rows)
    days = H.lookback_days(lay, D)
    built = H.build_window(lay, D, days)
    want = original_build_window(lay, D, days)
    assert built.equals(want)
    assert built.schema == want.schema
    # teeth: the edge keys are in it, and more than one entity
    assert {0, 2**63, 2**64 - 1} <= set(built.get_column(KEY).to_list())
    assert built.get_column(ENTITY).n_unique() == len(ENTITY_KEYS)
    # moved on night by night from the table written the way update_window writes it
    H._write_pieces(H.window_path(lay, D), H._WINDOW_SCHEMA, H._build_pieces(lay, D, days))
    assert pl.read_parquet(H.window_path(lay, D)).equals(want)
    for k in range(1, 6):  # D + 2 has no table (nothing added), D + 3 after it
        day = D + timedelta(days=k)
        prev_days = H.lookback_days(lay, day - timedelta(days=1))
        prev = pl.read_parquet(H.window_path(lay, day - timedelta(days=1)))
        pieces = list(H._advance(lay, day, prev_days))
        moved = pl.concat(pieces) if pieces else pl.DataFrame(schema=H._WINDOW_SCHEMA)
        assert moved.equals(original_advance(lay, prev, day, prev_days))
        assert moved.equals(original_build_window(lay, day, H.lookback_days(lay, day)))
        H._write_pieces(H.window_path(lay, day), H._WINDOW_SCHEMA, pieces)
        assert pl.read_parquet(H.window_path(lay, day)).equals(moved)


def test_an_empty_lookback_writes_an_empty_window(tmp_path):
    lay = Layout(tmp_path)
    write_raw_day(lay, D, [{}])
    assert H.update_window(lay, D) is True
    table = pl.read_parquet(H.window_path(lay, D))
    assert table.height == 0 and table.schema == original_build_window(lay, D, []).schema


def many_parties_world(tmp_path: Path, days: int = 12, rows: int = 60) -> Layout:
    lay = Layout(tmp_path)
    rng = random.Random(21)
    for k in range(days, -2, -1):
        write_raw_day(lay, D - timedelta(days=k), [_parcel(rng) for _ in range(rows)])
    return lay


def test_window_never_reads_a_whole_table(tmp_path, monkeypatch):
    """Built and moved on one (entity, key range) at a time: no read of the previous window
    or of a daily table, and no collect, returns more than about ``_WINDOW_PART_ROWS`` rows (the
    whole previous window read at once and joined held 1.7 GB at 4 M rows a day)."""
    lay = many_parties_world(tmp_path)
    part_rows = 20
    H.ensure_history(lay, D + timedelta(days=1))
    heights = watch_read_heights(monkeypatch)
    monkeypatch.setattr(H, "_WINDOW_PART_ROWS", part_rows)
    assert H.update_window(lay, D) is True  # summed in full
    assert H.update_window(lay, D + timedelta(days=1)) is True  # moved on from it
    monkeypatch.undo()
    whole = pl.read_parquet(H.window_path(lay, D + timedelta(days=1)))
    assert whole.height > 8 * part_rows  # reading it whole would show
    assert heights and max(heights) <= 2 * part_rows, f"a read of {max(heights)} rows (table: {whole.height})"
    assert whole.equals(original_build_window(lay, D + timedelta(days=1), H.lookback_days(lay, D + timedelta(days=1))))


def test_window_written_in_ranges_is_private_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    lay = many_parties_world(tmp_path, days=4)
    monkeypatch.setattr(H, "_WINDOW_PART_ROWS", 30)
    H.update_window(lay, D)
    H.update_window(lay, D + timedelta(days=1))
    folder = lay.history / "window"
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []
    for p in folder.iterdir():
        assert p.stat().st_mode & 0o777 == 0o600, p


def test_a_killed_history_step_s_spill_is_swept_by_the_next(tmp_path):
    """A process killed while writing a day's tables leaves its spill (the day's keys); the next
    history step removes it and leaves no folder of its own."""
    import os
    import subprocess
    import sys

    from riskpipe.store import _host

    lay = raw_world(tmp_path)
    dead = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )
    lay.history.mkdir(parents=True, exist_ok=True)
    left = lay.history / f".scratch-history-{_host()}-{dead}-0badc0de"
    left.mkdir()
    (left / "0-0.arrows").write_bytes(b"spilled keys")
    assert H.update_history(lay, D) is True
    assert not left.exists()
    assert [p.name for p in lay.history.iterdir() if p.name.startswith(".")] == []
    assert os.stat(lay.history).st_mode & 0o777 == 0o700


def test_moving_the_window_on_reads_one_version_of_the_previous_window(tmp_path, monkeypatch):
    """The window is moved on a key range at a time, each range reading its slice of the previous
    night's table: a table replaced (or pruned) by another process meanwhile must not give later
    ranges another version (update_window reads hard-linked copies of its inputs)."""
    lay = many_parties_world(tmp_path)
    nxt = D + timedelta(days=1)
    H.ensure_history(lay, nxt)
    monkeypatch.setattr(H, "_WINDOW_PART_ROWS", 20)
    assert H.update_window(lay, D) is True  # summed in full
    want = original_build_window(lay, nxt, H.lookback_days(lay, nxt))
    real_range, calls = H._advance_range, []

    def advance_range(*a, **k):
        if not calls:  # after the first range: another process replaces the previous window
            H.write_parquet_atomic(pl.DataFrame(schema=H._WINDOW_SCHEMA), H.window_path(lay, D))
        calls.append(1)
        return real_range(*a, **k)

    monkeypatch.setattr(H, "_advance_range", advance_range)
    assert H.update_window(lay, nxt) is True  # moved on from it
    assert len(calls) > 1
    assert pl.read_parquet(H.window_path(lay, nxt)).equals(want)
    assert not [p.name for p in lay.history.iterdir() if p.name.startswith(".")]
