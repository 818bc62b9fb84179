"""Entity history: small per-entity daily aggregates, kept incrementally, summed over windows.

``history/entities/day=D.parquet``: one row per (entity kind, hashed key) seen on arrival day D
with its parcel count and distinct shipper count; ``history/headings/day=D.parquet``: value norms
per HTS heading. A window of 30 days sums 30 small tables instead of rescanning raw rows;
``history/window/day=D.parquet`` holds those sums for the night of D once, written after the night
before is published (from the previous day's window: one day added, the oldest taken out), so
that the night reads one table (:func:`update_window`; stale after a past day is re-ingested, and
then the night sums the daily tables as before).
Prior exams link outcomes (exam date strictly before the day scored) to the parties of the
examined shipment through ``history/labelled_parties.parquet``, a cache of hashed party keys of
labelled shipments (it only grows; what a feature may use is decided by the labels passed in).

Bounded memory (issue 16 point 4: a day several times larger than one machine's memory): the
daily tables are written from the raw day read a slice of rows at a time (``_CHUNK_ROWS``), its
(key, shipper key) pairs spilled to a private folder per entity and range of the 64-bit key
(:func:`riskpipe.features.partials.key_range`), each range then grouped on its own and appended
in (entity, key) order to one Parquet file (:func:`_write_pieces`); the window table likewise,
one (entity, key range) of its inputs at a time (``_WINDOW_PART_ROWS``), each range reading only
its slice (row-group statistics skip the rest: every table here is sorted by entity and key).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.features import value
from riskpipe.features.family import DayContext, FamilyDay, NoWork
from riskpipe.features.keys import ENTITY_KEYS, key_col, with_keys
from riskpipe.store import (
    PRIVATE_FILE,
    Layout,
    ensure_raw_complete,
    private_dir,
    scan_raw_shipments,
    scratch_dir,
    write_atomic,
    write_parquet_atomic,
    write_text_atomic,
)

WINDOWS = (1, 7, 30, 90)
LOOKBACK_DAYS = max(WINDOWS)
#: entities whose parcel and shipper counts are windowed
COUNT_ENTITIES = ("cons_addr", "cons_name", "cons_phone")
#: entities whose first-seen age is a feature
FIRST_SEEN_ENTITIES = ("shipper", "seller", "cons_addr")
#: entities linked to prior exams
EXAM_ENTITIES = ("cons_addr", "cons_name", "cons_phone", "shipper", "seller")
#: how far before an exam date the examined shipment's arrival day is searched
EXAM_SEARCH_DAYS = 7

ENTITY = "entity"
KEY = "key"
DAY = "day"
PARCELS = "parcels"
SHIPPERS = "shippers"
_FORMAT = 1
#: history days whose matched rows are held in memory at once (window lookups)
_DAYS_PER_CHUNK = 10
#: raw rows whose keys are computed at once by :func:`update_history` (a slice of one raw file)
_CHUNK_ROWS = 250_000
#: raw rows of a day whose (key, shipper) pairs of one entity are grouped at once (the key space
#: is cut into ranges of about this many rows each)
_DAY_PART_ROWS = 2_000_000
#: rows of a row group in the tables written a piece at a time (:func:`_write_pieces`): small
#: enough that a key range's reader skips most of the file
_ROW_GROUP_ROWS = 131_072
_SHIPPER_KEY = "_shipper_key"
#: the daily entity table's columns
_ENTITY_SCHEMA = pl.Schema({ENTITY: pl.UInt8, KEY: pl.UInt64, PARCELS: pl.UInt32, SHIPPERS: pl.UInt32})


def parcels_col(entity: str, window: int) -> str:
    return f"hist_{entity}_parcels_{window}d"


def shippers_col(entity: str, window: int) -> str:
    return f"hist_{entity}_shippers_{window}d"


def first_seen_col(entity: str) -> str:
    return f"hist_{entity}_first_seen_days"


def exams_col(entity: str) -> str:
    return f"hist_{entity}_prior_exams"


def positives_col(entity: str) -> str:
    return f"hist_{entity}_prior_positives"


COLUMNS = (
    [parcels_col(e, w) for e in COUNT_ENTITIES for w in WINDOWS]
    + [shippers_col(e, w) for e in COUNT_ENTITIES for w in WINDOWS]
    + [first_seen_col(e) for e in FIRST_SEEN_ENTITIES]
    + [c for e in EXAM_ENTITIES for c in (exams_col(e), positives_col(e))]
)


# ---------------------------------------------------------------------------------------------
# the daily tables
# ---------------------------------------------------------------------------------------------
def _private(layout: Layout, path: Path) -> Path:
    """``path``, its folders under the home made 0700: the history tables hold hashed party keys
    (owner only, files written 0600, as the raw store)."""
    private_dir(path.parent, under=layout.home)
    return path


def entities_path(layout: Layout, day: date) -> Path:
    return layout.history / "entities" / f"day={day.isoformat()}.parquet"


def _meta_ok(layout: Layout) -> bool:
    """History is valid only for the Polars version (hash function) and format that wrote it."""
    meta = layout.history / "meta.json"
    want = {"polars": pl.__version__, "format": _FORMAT}
    if meta.exists() and json.loads(meta.read_text(encoding="utf-8")) == want:
        return True
    import shutil

    for sub in ("entities", "headings", "fingerprints", "window", "labelled_parties.parquet", "labelled_links.parquet"):
        p = layout.history / sub
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    write_text_atomic(json.dumps(want), _private(layout, meta), mode=PRIVATE_FILE)
    return False


def day_entity_aggregates(keyed: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
    """Per (entity, key) of one day: parcels and distinct shippers (needs the ``_key_*`` columns)."""
    keyed = keyed.lazy()
    parts = []
    for i, name in enumerate(ENTITY_KEYS):
        parts.append(
            keyed.filter(pl.col(key_col(name)).is_not_null())
            .group_by(pl.col(key_col(name)).alias(KEY))
            .agg(
                pl.len().cast(pl.UInt32).alias(PARCELS),
                pl.col(key_col("shipper")).n_unique().cast(pl.UInt32).alias(SHIPPERS),
            )
            .with_columns(pl.lit(i, pl.UInt8).alias(ENTITY))
        )
    return pl.concat(parts).select(ENTITY, KEY, PARCELS, SHIPPERS)


ENTITY_CODES = {name: i for i, name in enumerate(ENTITY_KEYS)}


def raw_fingerprint(layout: Layout, day: date) -> str:
    """Names, sizes and modification times of the raw files of ``day``: history written from an
    older version of the partition (a late file was ingested since) is recomputed."""
    files = sorted(layout.raw_shipments_day(day).glob("*.parquet"))
    text = "\n".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return hashlib.sha256(text.encode()).hexdigest()


def _fingerprint_path(layout: Layout, day: date) -> Path:
    return layout.history / "fingerprints" / f"day={day.isoformat()}.txt"


def history_current(layout: Layout, day: date, fingerprint: str | None = None) -> bool:
    """True when the aggregates of ``day`` exist and were built from the current raw partition."""
    fp = _fingerprint_path(layout, day)
    if not (entities_path(layout, day).exists() and value.headings_path(layout, day).exists() and fp.exists()):
        return False
    return fp.read_text(encoding="utf-8") == (fingerprint or raw_fingerprint(layout, day))


def write_day_history(layout: Layout, day: date, prepared: pl.LazyFrame | pl.DataFrame, fingerprint: str) -> None:
    """Write the aggregates of ``day`` from a frame that carries the ``_key_*`` columns and the
    value helper columns (``value.HEADING``, log values); the fingerprint goes last (commit)."""
    ent = day_entity_aggregates(prepared).collect()
    heads = value.heading_aggregates(prepared.lazy()).collect()
    write_parquet_atomic(heads.sort(value.HEADING), _private(layout, value.headings_path(layout, day)), PRIVATE_FILE)
    write_parquet_atomic(ent.sort(ENTITY, KEY), _private(layout, entities_path(layout, day)), PRIVATE_FILE)
    write_text_atomic(fingerprint, _private(layout, _fingerprint_path(layout, day)), PRIVATE_FILE)


def update_history(layout: Layout, day: date) -> bool:
    """Write the daily aggregates of arrival day ``day`` if missing or stale (True when written).

    Idempotent; only reads the raw partition of that day, in slices of ``_CHUNK_ROWS`` rows:
    memory does not grow with the day (the keys of the whole day held 0.98 GB at 4 M rows).
    The entity table is the one :func:`write_day_history` writes (same rows, order and
    types); the heading sums are added chunk by chunk as integers (:func:`value.heading_units`):
    the table one pass over the day writes, to the bit."""
    _meta_ok(layout)
    fingerprint = raw_fingerprint(layout, day)
    if history_current(layout, day, fingerprint):
        return False
    ensure_raw_complete(layout)
    files = sorted(layout.raw_shipments_day(day).glob("*.parquet"))  # what scan_raw_shipments reads
    files_rows = {f: pl.scan_parquet(f, hive_partitioning=False).select(pl.len()).collect().item() for f in files}
    parts = max(1, -(-sum(files_rows.values()) // _DAY_PART_ROWS))
    with scratch_dir(layout.history, "history", under=layout.home) as tmp:
        heads = _spill_day(files_rows, tmp, parts)
        write_parquet_atomic(heads, _private(layout, value.headings_path(layout, day)), PRIVATE_FILE)
        _write_pieces(_private(layout, entities_path(layout, day)), _ENTITY_SCHEMA, _grouped_spill(tmp, parts))
    write_text_atomic(fingerprint, _private(layout, _fingerprint_path(layout, day)), PRIVATE_FILE)
    return True


def _prepared_exprs() -> list[pl.Expr]:
    """The day's keys and value helpers (what :func:`write_day_history` reads)."""
    return [
        *(expr.alias(key_col(name)) for name, expr in ENTITY_KEYS.items()),
        value.heading_expr(),
        *value.log_value_exprs(),
    ]


def _raw_chunks(files_rows: dict[Path, int]) -> Iterator[pl.DataFrame]:
    """The keys and value helpers of the raw rows of the files (with their row counts),
    ``_CHUNK_ROWS`` rows at a time (a slice of one file each: the reader decodes only that
    slice's row groups: over 12 M raw rows, 0.4 GB peak; one streaming scan of them, 0.8 GB)."""
    exprs = _prepared_exprs()
    for f, rows in files_rows.items():
        for offset in range(0, rows, _CHUNK_ROWS):
            yield pl.scan_parquet(f, hive_partitioning=False).slice(offset, _CHUNK_ROWS).select(exprs).collect()


def _spill_path(folder: Path, code: int, part: int) -> Path:
    return folder / f"entity={code}-part={part}.arrow"


def _spill_day(files_rows: dict[Path, int], folder: Path, parts: int) -> pl.DataFrame:
    """Spill each chunk's (key, shipper key) pairs of each entity to ``folder``, one Arrow
    stream per entity and key range (nulls left out, as :func:`day_entity_aggregates`); returns
    the day's heading aggregates (the chunks' sums added)."""
    import pyarrow as pa

    from riskpipe.features.partials import part_of

    schema = pl.DataFrame(schema={KEY: pl.UInt64, _SHIPPER_KEY: pl.UInt64}).to_arrow().schema
    writers: dict[tuple[int, int], pa.ipc.RecordBatchStreamWriter] = {}
    heads = []
    try:
        for code, _name in enumerate(ENTITY_KEYS):
            for part in range(parts):
                path = _spill_path(folder, code, part)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))  # hashes: 0600
                writers[code, part] = pa.ipc.new_stream(str(path), schema)
        for chunk in _raw_chunks(files_rows):
            heads.append(value.heading_units(chunk.lazy()).collect())
            for code, name in enumerate(ENTITY_KEYS):
                pairs = chunk.select(
                    pl.col(key_col(name)).alias(KEY), pl.col(key_col("shipper")).alias(_SHIPPER_KEY)
                ).filter(pl.col(KEY).is_not_null())
                if parts == 1:
                    writers[code, 0].write_table(pairs.to_arrow())
                    continue
                split = pairs.with_columns(part_of(pl.col(KEY), parts).alias("_part"))
                for (part,), piece in split.partition_by("_part", as_dict=True, include_key=False).items():
                    writers[code, int(part)].write_table(piece.to_arrow())
            del chunk
    finally:
        for w in writers.values():
            w.close()
    if not heads:  # an empty day: the aggregates' columns, no rows
        empty = pl.DataFrame(schema=S.RAW_SHIPMENT_SCHEMA).select(_prepared_exprs())
        heads = [value.heading_units(empty.lazy()).collect()]
    # the chunks' sums added as integers: the table one pass over the day writes, to the bit
    return value.heading_sums(pl.concat(heads).lazy()).collect().sort(value.HEADING)


def _grouped_spill(folder: Path, parts: int) -> Iterator[pl.DataFrame]:
    """Per entity, per key range in order: the range's parcels and distinct shippers (null
    counted as one shipper, as ``n_unique`` in :func:`day_entity_aggregates`), sorted by key."""
    for code, _name in enumerate(ENTITY_KEYS):
        for part in range(parts):
            pairs = pl.read_ipc_stream(_spill_path(folder, code, part))
            yield (
                pairs.group_by(KEY)
                .agg(
                    pl.len().cast(pl.UInt32).alias(PARCELS),
                    pl.col(_SHIPPER_KEY).n_unique().cast(pl.UInt32).alias(SHIPPERS),
                )
                .sort(KEY)
                .select(pl.lit(code, pl.UInt8).alias(ENTITY), KEY, PARCELS, SHIPPERS)
            )
            del pairs


def _write_pieces(path: Path, schema: pl.Schema, pieces: Iterable[pl.DataFrame]) -> Path:
    """``pieces`` (frames of ``schema``, in the table's order) appended to one Parquet file,
    written atomically and 0600 (Polars writes a frame at once: pyarrow's writer appends row
    groups; the file reads back as the concatenated frame, with row-group statistics)."""
    import pyarrow.parquet as pq

    arrow = pl.DataFrame(schema=schema).to_arrow().schema

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, arrow, compression="zstd") as out:
            for piece in pieces:
                if piece.height:
                    out.write_table(piece.select(list(schema)).cast(schema).to_arrow(), row_group_size=_ROW_GROUP_ROWS)

    return write_atomic(path, write, PRIVATE_FILE)


def ensure_history(layout: Layout, day: date) -> list[date]:
    """Make sure the aggregates of every raw day in the lookback before ``day`` exist.

    Returns the history days available (ascending)."""
    _meta_ok(layout)
    first = day - timedelta(days=LOOKBACK_DAYS)
    days = [d for d in layout.raw_days() if first <= d < day]
    for d in days:
        update_history(layout, d)
    return days


# ---------------------------------------------------------------------------------------------
# window features
# ---------------------------------------------------------------------------------------------
def window_features(
    layout: Layout,
    day: date,
    days: list[date],
    entity: str,
    keys_today: pl.Series,
    use_window: bool | None = None,
    every_key: bool = True,
) -> pl.DataFrame:
    """Per key of ``entity`` seen today: windowed parcels (``p<w>``) and shipper-days (``s<w>``),
    and the first-seen age in days (``age``, null when never seen in the lookback).
    ``every_key`` False: from the window table, only the keys seen in the lookback (a caller
    that joins today's rows to it fills the others: zero sums, null age; saves one join).

    Read from the window table of ``day`` when it is current (``use_window`` None: checked
    here; see :func:`update_window`), else summed from the daily files, which are sorted by
    entity, so the entity filter skips most row groups."""
    code = ENTITY_CODES[entity]
    schema = pl.Schema(
        {
            KEY: pl.UInt64,
            **{f"p{w}": pl.UInt32 for w in WINDOWS},
            **{f"s{w}": pl.UInt32 for w in WINDOWS},
            "age": pl.Int32,
        }
    )
    if not days or keys_today.len() == 0:
        return pl.DataFrame(schema=schema)
    if use_window if use_window is not None else window_current(layout, day, days):
        return _from_window(layout, day, code, keys_today.unique(), every_key).select(list(schema)).cast(schema)
    scans = [
        pl.scan_parquet(str(entities_path(layout, d)))
        .filter(pl.col(ENTITY) == code)
        .select(KEY, PARCELS, SHIPPERS, pl.lit((day - d).days, pl.Int32).alias("ago"))
        for d in days
    ]
    # each history row gets the index of its key among today's keys (one hash join), then the
    # window sums are numpy bincounts (linear; no group_by with conditional sums over 30+ days)
    import numpy as np

    uniq = keys_today.unique()
    n = uniq.len()
    index = pl.LazyFrame({KEY: uniq, "_i": pl.int_range(0, n, dtype=pl.Int64, eager=True)})
    # bucket: the smallest window holding the row's day; windows are nested, so a cumulative sum
    # over the buckets of a key gives every window (one bincount per measure and chunk of days;
    # chunks bound the memory of the matched rows)
    ago = pl.col("ago")
    bucket = pl.lit(len(WINDOWS) - 1, pl.Int64)
    for j, w in reversed(list(enumerate(WINDOWS[:-1]))):
        bucket = pl.when(ago <= w).then(pl.lit(j, pl.Int64)).otherwise(bucket)
    nw = len(WINDOWS)
    sums = {"p": np.zeros(n * nw), "s": np.zeros(n * nw)}
    age = np.full(n, -1, dtype=np.int32)
    for c in range(0, len(scans), _DAYS_PER_CHUNK):
        hist = (
            pl.concat(scans[c : c + _DAYS_PER_CHUNK])
            .join(index, on=KEY, how="inner")
            .select((pl.col("_i") * nw + bucket).alias("cell"), "_i", PARCELS, SHIPPERS, "ago")
            .collect()
        )
        cell = hist.get_column("cell").to_numpy()
        sums["p"] += np.bincount(cell, weights=hist.get_column(PARCELS).to_numpy(), minlength=n * nw)
        sums["s"] += np.bincount(cell, weights=hist.get_column(SHIPPERS).to_numpy(), minlength=n * nw)
        np.maximum.at(age, hist.get_column("_i").to_numpy(), hist.get_column("ago").to_numpy())
        del hist, cell
    cols: dict[str, object] = {KEY: uniq}
    for name, flat in sums.items():
        cum = flat.reshape(n, nw).cumsum(axis=1)
        for j, w in enumerate(WINDOWS):
            cols[f"{name}{w}"] = cum[:, j].astype(np.uint32)
    out = pl.DataFrame(cols).with_columns(pl.Series("age", age).replace(-1, None))
    return out.select(list(schema)).cast(schema)


# ---------------------------------------------------------------------------------------------
# the window table: the lookback summed once, after the night before
# ---------------------------------------------------------------------------------------------
#: the presence bitmap of a key over the lookback is two words of this many days each (bit i of
#: ``seen_lo``: seen i + 1 days before the window's day; of ``seen_hi``: i + 1 + _HALF days
#: before), so that moving the window one day on is an exact integer multiplication (no overflow)
_HALF = LOOKBACK_DAYS // 2
SEEN_LO, SEEN_HI = "seen_lo", "seen_hi"
_WINDOW_FORMAT = 1
#: input rows (daily tables, the previous window) of one entity read at once by
#: :func:`build_window` and :func:`_advance`: the key space of each entity is cut into ranges of
#: about this many rows (from the Parquet metadata), summed one after the other
_WINDOW_PART_ROWS = 2_000_000
#: the window table's columns after ``ENTITY`` and ``KEY``
_SUMS = [f"{m}{w}" for m in ("p", "s") for w in WINDOWS]
_WINDOW_SCHEMA = pl.Schema(
    {ENTITY: pl.UInt8, KEY: pl.UInt64, **{c: pl.UInt32 for c in _SUMS}, SEEN_LO: pl.UInt64, SEEN_HI: pl.UInt64}
)
assert 2 * _HALF == LOOKBACK_DAYS


def window_path(layout: Layout, day: date) -> Path:
    """The window table of the night of ``day``: every (entity, key) seen in the lookback days
    before ``day``, its windowed parcels / shipper-days and when it was seen."""
    return layout.history / "window" / f"day={day.isoformat()}.parquet"


def _window_stamp_path(layout: Layout, day: date) -> Path:
    return layout.history / "window" / f"day={day.isoformat()}.json"


def lookback_days(layout: Layout, day: date) -> list[date]:
    """The raw days of the lookback before ``day`` (ascending): the days a window sums."""
    first = day - timedelta(days=LOOKBACK_DAYS)
    return [d for d in layout.raw_days() if first <= d < day]


def _stamp(layout: Layout, days: list[date]) -> dict[str, str]:
    """What a window table is built from: each lookback day's raw fingerprint (a file added to a
    past day, or a day added, changes it)."""
    return {d.isoformat(): raw_fingerprint(layout, d) for d in days}


def _read_stamp(layout: Layout, day: date) -> dict[str, str] | None:
    path = _window_stamp_path(layout, day)
    if not (path.exists() and window_path(layout, day).exists()):
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != _WINDOW_FORMAT or data.get("polars") != pl.__version__:
        return None
    return data.get("days")


def window_current(layout: Layout, day: date, days: list[date] | None = None) -> bool:
    """True when the window table of ``day`` exists and was built from the history tables of the
    lookback days as they are now (a past day re-ingested since, or a day added, makes it stale;
    the night then sums the daily tables itself, with the same result)."""
    days = lookback_days(layout, day) if days is None else days
    stamp = _read_stamp(layout, day)
    return stamp is not None and stamp == _stamp(layout, days)


def _day_rows(layout: Layout, d: date, ago: int, code: int, lo: int, hi: int | None) -> pl.LazyFrame:
    """One history day's (entity, key) rows of entity ``code`` and keys ``lo <= key < hi`` with
    its parcels in each window that holds it and its bit in the presence bitmap (``ago``: days
    before the window's day)."""
    lo_bit = (1 << (ago - 1)) if ago <= _HALF else 0
    hi_bit = (1 << (ago - 1 - _HALF)) if ago > _HALF else 0
    return _slice(entities_path(layout, d), code, lo, hi).select(
        ENTITY,
        KEY,
        *((pl.col(PARCELS) if ago <= w else pl.lit(0, pl.UInt32)).alias(f"p{w}") for w in WINDOWS),
        *((pl.col(SHIPPERS) if ago <= w else pl.lit(0, pl.UInt32)).alias(f"s{w}") for w in WINDOWS),
        pl.lit(lo_bit, pl.UInt64).alias(SEEN_LO),
        pl.lit(hi_bit, pl.UInt64).alias(SEEN_HI),
    )


def _slice(path: Path, code: int, lo: int, hi: int | None) -> pl.LazyFrame:
    """The rows of entity ``code`` with ``lo <= key < hi`` of a table sorted by (entity, key):
    the reader skips the row groups whose statistics lie outside."""
    keep = (pl.col(ENTITY) == pl.lit(code, pl.UInt8)) & (pl.col(KEY) >= pl.lit(lo, pl.UInt64))
    if hi is not None:
        keep = keep & (pl.col(KEY) < pl.lit(hi, pl.UInt64))
    return pl.scan_parquet(path).filter(keep)


def _entity_rows(paths: list[Path]) -> dict[int, int]:
    """Rows of each entity code in tables sorted by entity, from the row groups' statistics
    in the Parquet footers (a row group spanning several entities counts for each: an upper
    bound, read without touching the data)."""
    import pyarrow.parquet as pq

    rows: dict[int, int] = {}
    for path in paths:
        meta = pq.read_metadata(path)
        if meta.num_row_groups == 0:
            continue
        first = meta.row_group(0)
        j = next(i for i in range(first.num_columns) if first.column(i).path_in_schema == ENTITY)
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            stats = group.column(j).statistics
            lo, hi = (stats.min, stats.max) if stats is not None and stats.has_min_max else (0, len(ENTITY_KEYS) - 1)
            for code in range(int(lo), int(hi) + 1):
                rows[code] = rows.get(code, 0) + group.num_rows
    return rows


def _ranges(paths: list[Path]) -> Iterator[tuple[int, int, int | None]]:
    """(entity code, lo, hi) in the tables' order: each entity's key space cut into ranges
    (:func:`riskpipe.features.partials.key_range`) of about ``_WINDOW_PART_ROWS`` input rows."""
    from riskpipe.features.partials import key_range

    for code, n in sorted(_entity_rows(paths).items()):
        parts = max(1, -(-n // _WINDOW_PART_ROWS))
        for part in range(parts):
            yield (code, *key_range(part, parts))


def build_window(layout: Layout, day: date, days: list[date]) -> pl.DataFrame:
    """The window table of ``day`` summed from the daily tables of ``days`` (its lookback), in
    one frame (what :func:`update_window` writes a range at a time: :func:`_build_pieces`)."""
    pieces = list(_build_pieces(layout, day, days))
    return pl.concat(pieces) if pieces else pl.DataFrame(schema=_WINDOW_SCHEMA)


def _build_pieces(layout: Layout, day: date, days: list[date]) -> Iterator[pl.DataFrame]:
    """The window table of ``day`` from the daily tables of ``days``, one (entity, key range) at
    a time in (entity, key) order: a range reads only its slice of each day (one group-by over
    30 days of a 4 M-row day's keys held 5.1 GB; parts by key modulo, each reading every day
    whole, and the previous table read whole to move it on: 1.7 GB)."""
    for code, lo, hi in _ranges([entities_path(layout, d) for d in days]):
        rows = pl.concat([_day_rows(layout, d, (day - d).days, code, lo, hi) for d in days])
        sums = rows.group_by(ENTITY, KEY).agg(
            *(pl.col(c).sum().cast(pl.UInt32) for c in _SUMS),
            pl.col(SEEN_LO).sum(),  # distinct powers of two: the sum is the bitwise or
            pl.col(SEEN_HI).sum(),
        )
        yield sums.collect(engine="streaming").sort(KEY).select(list(_WINDOW_SCHEMA))


def _advance(
    layout: Layout, day: date, prev_days: list[date], pin: Callable[[Path], Path] | None = None
) -> Iterator[pl.DataFrame]:
    """The window table of ``day`` from that of the day before (built from ``prev_days``): the
    day before added, each window's oldest day taken out, the bitmap shifted by one day; one
    (entity, key range) at a time in (entity, key) order, each reading only its slice of the
    tables. Equal to :func:`build_window` (tested). ``pin``: the path to read a table from
    (:func:`update_window` hard-links each into a scratch folder, so that every range reads the
    same version of a table that another process replaces or prunes meanwhile)."""
    pin = pin or (lambda path: path)
    new_day = day - timedelta(days=1)
    prev_path = pin(window_path(layout, new_day))
    held = set(prev_days)
    gone = {w: new_day - timedelta(days=w) for w in WINDOWS}  # w days before the previous window's day
    drops = {w: pin(entities_path(layout, g)) for w, g in gone.items() if g in held}
    added = entities_path(layout, new_day) if new_day in set(layout.raw_days()) else None
    if added is not None and not added.exists():
        added = None
    if added is not None:
        added = pin(added)
    inputs = [prev_path, *drops.values(), *([added] if added is not None else [])]
    for code, lo, hi in _ranges(inputs):
        yield _advance_range(_slice(prev_path, code, lo, hi), drops, added, code, lo, hi)


def _advance_range(
    prev: pl.LazyFrame, drops: dict[int, Path], added: Path | None, code: int, lo: int, hi: int | None
) -> pl.DataFrame:
    """:func:`_advance` of one (entity, key range): ``prev`` its slice of the previous window,
    ``drops`` the daily tables leaving each window, ``added`` the day entering (or None)."""
    out = prev
    for w in WINDOWS:
        if w in drops:
            drop = _slice(drops[w], code, lo, hi).select(
                ENTITY, KEY, pl.col(PARCELS).alias(f"_dp{w}"), pl.col(SHIPPERS).alias(f"_ds{w}")
            )
            out = out.join(drop, on=[ENTITY, KEY], how="left")
        else:
            out = out.with_columns(pl.lit(None, pl.UInt32).alias(f"_dp{w}"), pl.lit(None, pl.UInt32).alias(f"_ds{w}"))
    if added is not None:
        today = _slice(added, code, lo, hi).select(
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
    top = pl.lit(1 << (_HALF - 1), pl.UInt64)  # the oldest day of a word
    lo_word, hi_word = pl.col(SEEN_LO).fill_null(z64), pl.col(SEEN_HI).fill_null(z64)

    def moved(m: str, w: int, add: str) -> pl.Expr:
        return (
            pl.col(f"{m}{w}").fill_null(z32).cast(pl.Int64)
            - pl.col(f"_d{m}{w}").fill_null(z32).cast(pl.Int64)
            + pl.col(add).fill_null(z32).cast(pl.Int64)
        ).cast(pl.UInt32)

    out = out.select(
        ENTITY,
        KEY,
        *(moved("p", w, "_np").alias(f"p{w}") for w in WINDOWS),
        *(moved("s", w, "_ns").alias(f"s{w}") for w in WINDOWS),
        ((lo_word % top) * 2 + pl.col("_seen").fill_null(z64)).alias(SEEN_LO),
        ((hi_word % top) * 2 + lo_word // top).alias(SEEN_HI),
    ).filter((pl.col(SEEN_LO) > 0) | (pl.col(SEEN_HI) > 0))
    return out.collect().sort(KEY).select(list(_WINDOW_SCHEMA))


def update_window(layout: Layout, day: date) -> bool:
    """Write the window table of the night of ``day`` if missing or stale (True when written):
    from the table of the day before when that one is current (one day added, the windows'
    oldest days taken out), else summed from the lookback's daily tables. Run after the night
    before is published (:func:`riskpipe.nightly.history_step`): the night of ``day`` then reads
    one table instead of summing the lookback's (off its critical path). Idempotent. Written
    one (entity, key range) at a time: memory does not grow with the day."""
    days = lookback_days(layout, day)
    if window_current(layout, day, days):
        return False
    stamp = {"format": _WINDOW_FORMAT, "polars": pl.__version__, "days": _stamp(layout, days)}  # before reading
    days = ensure_history(layout, day)
    before = day - timedelta(days=1)
    prev_days = lookback_days(layout, before)
    with scratch_dir(layout.history, "window", under=layout.home) as pinned:
        if window_current(layout, before, prev_days):
            pieces = _advance(layout, day, prev_days, lambda path: _pinned(path, pinned))
        else:
            pieces = _build_pieces(layout, day, days)
        _write_pieces(_private(layout, window_path(layout, day)), _WINDOW_SCHEMA, pieces)
    write_text_atomic(json.dumps(stamp), _window_stamp_path(layout, day), PRIVATE_FILE)  # last: the commit
    _prune_windows(layout, day - timedelta(days=1))
    return True


def _pinned(path: Path, folder: Path) -> Path:
    """``path`` hard-linked into ``folder`` (the version of now, whatever replaces or removes
    ``path`` later; tables are replaced by renaming a new file in, never written in place), or
    ``path`` itself where the filesystem has no hard links."""
    held = folder / f"{len(list(folder.iterdir()))}-{path.name}"
    try:
        os.link(path, held)
    except OSError:
        return path
    return held


def _prune_windows(layout: Layout, keep_from: date) -> None:
    """Remove the window tables of nights before ``keep_from`` (about 100 MB each at 4 M rows a
    day; a night that finds none sums the daily tables, with the same result)."""
    for path in sorted((layout.history / "window").glob("day=*.*")):
        try:
            d = date.fromisoformat(path.name.split("=", 1)[1].split(".", 1)[0])
        except ValueError:
            continue
        if d < keep_from:
            path.unlink(missing_ok=True)


def _from_window(layout: Layout, day: date, code: int, uniq: pl.Series, every_key: bool = True) -> pl.DataFrame:
    """Today's keys of entity ``code`` looked up in the window table of ``day``: the sums, and
    the first-seen age as the oldest bit of the presence bitmap (null when never seen);
    ``every_key`` False: only the keys the table holds."""
    table = (
        pl.scan_parquet(window_path(layout, day))
        .filter(pl.col(ENTITY) == code)
        .select(KEY, *_SUMS, SEEN_LO, SEEN_HI)
        .join(pl.LazyFrame({KEY: uniq}), on=KEY, how="semi")
        .collect()
    )
    width = pl.lit(64, pl.Int32)
    age = (
        pl.when(pl.col(SEEN_HI) > 0)
        .then(width - pl.col(SEEN_HI).bitwise_leading_zeros().cast(pl.Int32) + _HALF)
        .when(pl.col(SEEN_LO) > 0)
        .then(width - pl.col(SEEN_LO).bitwise_leading_zeros().cast(pl.Int32))
    )
    if not every_key:
        return table.with_columns(age.alias("age")).drop(SEEN_LO, SEEN_HI)
    return (
        pl.DataFrame({KEY: uniq})
        .join(table, on=KEY, how="left", maintain_order="left")
        .with_columns(*(pl.col(c).fill_null(0) for c in _SUMS), age.alias("age"))
        .drop(SEEN_LO, SEEN_HI)
    )


def labelled_parties(
    layout: Layout,
    labels: pl.DataFrame,
    keys: dict[str, pl.Expr] | None = None,
    cache_name: str = "labelled_parties.parquet",
) -> pl.DataFrame:
    """Hashed party keys of labelled shipments (cached; only unseen shipment ids are looked up in
    the raw partitions of the ``EXAM_SEARCH_DAYS`` before their exam date). ``keys``: the keys to
    cache (default: the ``EXAM_ENTITIES``), one cache file per key set (``cache_name``)."""
    keys = {e: ENTITY_KEYS[e] for e in EXAM_ENTITIES} if keys is None else keys
    path = layout.history / cache_name
    key_cols = [key_col(e) for e in keys]
    schema = pl.Schema({S.SHIPMENT_ID: pl.String, **{k: pl.UInt64 for k in key_cols}})
    cache = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=schema)
    missing = labels.select(S.SHIPMENT_ID, S.EXAM_DATE).join(cache.select(S.SHIPMENT_ID), on=S.SHIPMENT_ID, how="anti")
    if missing.height:
        raw_days = set(layout.raw_days())
        wanted = sorted(
            {
                d - timedelta(days=k)
                for d in missing.get_column(S.EXAM_DATE).unique().to_list()
                for k in range(EXAM_SEARCH_DAYS + 1)
            }
            & raw_days
        )
        ids = missing.get_column(S.SHIPMENT_ID)
        found = (
            with_keys(
                scan_raw_shipments(layout, wanted).filter(pl.col(S.SHIPMENT_ID).is_in(ids.implode())),
                keys,
            )
            .select(S.SHIPMENT_ID, *key_cols)
            .unique(S.SHIPMENT_ID, keep="first")
            .collect()
        )
        # not found: remembered with null keys so it is not searched again
        nf = missing.select(S.SHIPMENT_ID).join(found.select(S.SHIPMENT_ID), on=S.SHIPMENT_ID, how="anti")
        nf = nf.with_columns(pl.lit(None, pl.UInt64).alias(k) for k in key_cols)
        cache = pl.concat([cache, found.cast(schema), nf.cast(schema)]).unique(S.SHIPMENT_ID, keep="first")
        write_parquet_atomic(cache.sort(S.SHIPMENT_ID), _private(layout, path), PRIVATE_FILE)
    return cache


def latest_outcomes_before(labels: pl.DataFrame | None, day: date) -> pl.DataFrame | None:
    """The latest outcome per shipment examined before ``day`` (``shipment_id``, ``exam_date``,
    positive flag), or None when there is none (shared by the history and graph families)."""
    if labels is None or labels.height == 0:
        return None
    known = labels.filter(pl.col(S.EXAM_DATE) < day)
    if known.height == 0:
        return None
    return (
        known.sort(S.EXAM_DATE)
        .unique(S.SHIPMENT_ID, keep="last")
        .select(S.SHIPMENT_ID, S.EXAM_DATE, S.is_positive_expr())
    )


def prior_exam_counts(layout: Layout, labels: pl.DataFrame | None, day: date) -> pl.DataFrame:
    """(ENTITY, KEY, exams, positives) from outcomes with exam_date strictly before ``day``."""
    empty = pl.DataFrame(schema={ENTITY: pl.UInt8, KEY: pl.UInt64, "exams": pl.UInt32, "positives": pl.UInt32})
    known = latest_outcomes_before(labels, day)
    if known is None:
        return empty
    parties = labelled_parties(layout, known)
    linked = known.join(parties, on=S.SHIPMENT_ID, how="inner")
    parts = [
        linked.filter(pl.col(key_col(e)).is_not_null())
        .group_by(pl.col(key_col(e)).alias(KEY))
        .agg(pl.len().cast(pl.UInt32).alias("exams"), pl.col(S.IS_POSITIVE).sum().cast(pl.UInt32).alias("positives"))
        .with_columns(pl.lit(ENTITY_CODES[e], pl.UInt8).alias(ENTITY))
        for e in EXAM_ENTITIES
    ]
    return pl.concat(parts).select(ENTITY, KEY, "exams", "positives")


def add_history(
    frame: pl.DataFrame, layout: Layout, day: date, days: list[date], labels: pl.DataFrame | None
) -> pl.DataFrame:
    """Add the history family to today's frame (eager; needs the ``_key_<entity>`` columns).

    Each entity is looked up on its own (single 64-bit key joins) into a narrow frame aligned
    with ``frame``; the columns are stacked at the end (no copy of the wide frame per entity)."""
    ents = sorted(set(COUNT_ENTITIES) | set(FIRST_SEEN_ENTITIES) | set(EXAM_ENTITIES), key=ENTITY_CODES.__getitem__)
    exams = prior_exam_counts(layout, labels, day)
    use_window = window_current(layout, day, days)
    new_cols: dict[str, pl.Series] = {}
    for e in ents:
        k = key_col(e)
        keys_today = frame.get_column(k).drop_nulls().unique()
        # today's keys not in the lookback get no row here: zeros and age 0 below, as from a row of zeros
        sub = window_features(layout, day, days, e, keys_today, use_window, every_key=False).rename({KEY: k})
        ex = exams.filter(pl.col(ENTITY) == ENTITY_CODES[e]).drop(ENTITY).rename({KEY: k})
        looked = (
            frame.select(k)
            .join(sub, on=k, how="left", maintain_order="left")
            .join(ex, on=k, how="left", maintain_order="left")
        )
        cols = []
        if e in COUNT_ENTITIES:
            cols += [pl.col(f"p{w}").fill_null(0).cast(pl.Int32).alias(parcels_col(e, w)) for w in WINDOWS]
            cols += [pl.col(f"s{w}").fill_null(0).cast(pl.Int32).alias(shippers_col(e, w)) for w in WINDOWS]
        if e in FIRST_SEEN_ENTITIES:
            # never seen in the lookback (or no party key): 0 days, "new"
            cols.append(pl.col("age").fill_null(0).cast(pl.Int16).alias(first_seen_col(e)))
        if e in EXAM_ENTITIES:
            cols += [
                pl.col("exams").fill_null(0).cast(pl.Int32).alias(exams_col(e)),
                pl.col("positives").fill_null(0).cast(pl.Int32).alias(positives_col(e)),
            ]
        new_cols.update({c.name: c for c in looked.select(cols).get_columns()})
    return frame.with_columns(new_cols[c] for c in COLUMNS)


def fires() -> pl.Expr:
    """A party of the shipment was linked to an earlier positive exam. (Volume flags such as
    many shippers to one address are left to the model: how much is "many" depends on the
    traffic, and in the synthetic world consignees buy every day.)"""
    prior_pos = pl.any_horizontal(pl.col(positives_col(e)) > 0 for e in EXAM_ENTITIES)
    return prior_pos


class _Lookups(NoWork):
    def __init__(self, ctx: DayContext) -> None:
        self.ctx = ctx

    def day_frame(self, frame: pl.DataFrame) -> pl.DataFrame:
        c = self.ctx
        return add_history(frame, c.layout, c.day, c.history_days, c.known_labels)


class HistoryFamily:
    """Whole-day: the day's hashed party keys looked up in the history tables and prior exams."""

    name = "history"
    columns = COLUMNS
    categorical: list[str] = []
    day_columns = COLUMNS
    reasons = {
        positives_col(e): f"the {e.replace('_', ' ')} was linked to an earlier positive exam" for e in EXAM_ENTITIES
    }

    def fires(self) -> pl.Expr:
        return fires()

    def open(self, ctx: DayContext) -> FamilyDay:
        return _Lookups(ctx)


FAMILY = HistoryFamily()
