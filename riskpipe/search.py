"""Search by identifier over the raw store, through a per-day identifier index; the watchlist flag.

An identifier (phone, e-mail, IP address, address, consignee or shipper name, seller) is
normalised with the expressions that build the party keys (:mod:`riskpipe.features.keys`): a
phone is its last 10 digits, a text is lower-cased with punctuation runs made one space, an IP
is stripped. A day's index is two files:

- ``ids-<fingerprint>.parquet``: the entries ``(field, h, row)``, ``h`` the 64-bit hash of a
  normalised identifier, ``row`` the shipment's row in the two files below, sorted by ``h`` in row
  groups of :data:`ROW_GROUP_ROWS`, so a look-up reads the footer and the one or two row groups
  whose min/max statistics can hold the hash, not the day (a 4 M-row day has about 36 M entries);
- ``sid-<fingerprint>.npy``: the day's shipment ids by row, fixed-width bytes, memory-mapped (a
  row's id is an array index; the ids were a third of the entries' size and build);
- ``rows-<fingerprint>.arrow``: what the results page shows of each shipment
  (:data:`DETAIL_COLUMNS`, the description cut to :data:`DESCRIPTION_CHARS`), an Arrow IPC file
  (zstd) in record batches of :data:`DETAIL_ROWS` rows: a result's details are one memory-mapped
  batch, so a search never opens a raw day (reading each hit's details from the raw days was
  about 0.1 s per day with hits, most of the p95 of 1.6 s on the 4 M-row home).

A search counts every match but reads the details of one page of them (:data:`PAGE_ROWS`, newest
day first): a seller with thousands of parcels costs no more than one with ten.

An index is built on first need (a search, or the nightly's watchlist step for the day it
scores, so the newest day is ready before anyone searches) and cached under
``<home>/index/search/day=D/``, the fingerprint made of the raw partition's files (name, size,
mtime), the index format (:data:`INDEX_VERSION`: an index of an older format is never read, it
is rebuilt and removed) and the Polars version (its hash is stable within a version only): a
re-ingested day gets a new index. The entries file is written last (its presence marks a
complete index). Index files are 0600 in 0700 folders (they link personal identifiers to
shipments).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from riskpipe import schema as S
from riskpipe.features.keys import _text as normalised_text
from riskpipe.features.keys import phone_digits
from riskpipe.lookup import read_groups
from riskpipe.store import PRIVATE_FILE, Layout, private_dir, scan_raw_shipments, tmp_sibling

INDEX_VERSION = 3  # 3: each entry's row in the day's details file; 2: the consignee address key
ROW_GROUP_ROWS = 64_000
DETAIL_ROWS = 256  # rows per record batch of a details file: one result decompresses this many
DESCRIPTION_CHARS = 80  # of a description, what the results page shows
SEARCH_DAYS = 90
MAX_RESULTS = 500  # :func:`search`'s rows (one page of them)
PAGE_ROWS = 100  # the results page's rows (the newest; the others a page further)
MIN_PHONE_DIGITS = 7
_SEED = 29
SETTLE_NS = 2_000_000_000
INDEX_LOCK_FILE = "build.lock"  # per day, beside its index files
READ_ATTEMPTS = 3  # a reader whose index file was replaced meanwhile resolves it again
_FP_CACHE: dict[tuple[str, int, int], str | None] = {}
_FP_LOCK = threading.Lock()

#: field code -> (label, identifier kind, column, normaliser)
FIELDS: dict[int, tuple[str, str, str]] = {
    1: ("consignee phone", "phone", S.CONSIGNEE_PHONE),
    2: ("shipper phone", "phone", S.SHIPPER_PHONE),
    3: ("consignee e-mail", "email", S.CONSIGNEE_EMAIL),
    4: ("shipper e-mail", "email", S.SHIPPER_EMAIL),
    5: ("account IP", "ip", S.ACCOUNT_IP),
    6: ("consignee address", "address", S.CONSIGNEE_ADDRESS),
    7: ("shipper address", "address", S.SHIPPER_ADDRESS),
    8: ("consignee name", "name", S.CONSIGNEE_NAME),
    9: ("shipper name", "name", S.SHIPPER_NAME),
    10: ("seller id", "seller", S.SELLER_ID),
    11: ("seller name", "seller", S.SELLER_NAME),
    12: ("consignee address key", "address_key", S.CONSIGNEE_ADDRESS_KEY),  # not searched: the workbench's links
}
KINDS = ("phone", "email", "ip", "address", "name", "seller")
#: what a search result shows of a shipment, carried in the index (its details file)
DETAIL_COLUMNS = [S.CONSIGNEE_NAME, S.SHIPPER_NAME, S.DESCRIPTION, S.PORT_OF_ENTRY]


def normaliser(kind: str, col: str) -> pl.Expr:
    """The normalised text of ``col`` as an identifier of ``kind`` (the party keys' expressions)."""
    if kind == "phone":
        return phone_digits(col)
    if kind == "ip":
        return pl.col(col).str.strip_chars()
    return normalised_text(col)


def normalise(kind: str, value: str) -> str:
    """A typed identifier normalised as the index normalises ``kind`` ("" when nothing is left)."""
    out = pl.DataFrame({"q": [value]}, schema={"q": pl.String}).select(normaliser(kind, "q")).item()
    return out or ""


def query_kinds(query: str, kind: str = "") -> dict[str, str]:
    """kind -> normalised query for the kinds searched (``kind`` empty: every kind the query can
    be; a phone needs at least :data:`MIN_PHONE_DIGITS` digits and no letters)."""
    kinds = [kind] if kind in KINDS else list(KINDS)
    out = {}
    for k in kinds:
        v = normalise(k, query)
        if k == "phone" and (len(v) < MIN_PHONE_DIGITS or (not kind and any(c.isalpha() for c in query))):
            continue
        if v:
            out[k] = v
    return out


def _hash(values: list[str]) -> list[int]:
    return pl.Series(values, dtype=pl.String).hash(seed=_SEED).to_list()


# ---------------------------------------------------------------------------------------------
# the per-day index
# ---------------------------------------------------------------------------------------------
def index_root(layout: Layout) -> Path:
    return layout.home / "index" / "search"


def _fingerprint(layout: Layout, day: date) -> str | None:
    """:func:`_files_fingerprint`, reused while the raw partition's folder is unchanged (a file
    added, removed or renamed in changes its mtime) and older than two seconds (coarse filesystem
    clocks): one stat instead of a listing and a stat per file, for each of the 30 days of a
    shipment page's party history."""
    folder = layout.raw_shipments_day(day)
    try:
        st = folder.stat()
    except OSError:
        return None
    key = (str(folder), st.st_mtime_ns, st.st_ino)
    with _FP_LOCK:
        if key in _FP_CACHE:
            return _FP_CACHE[key]
    fp = _files_fingerprint(layout, day)
    if time.time_ns() - st.st_mtime_ns > SETTLE_NS:
        with _FP_LOCK:
            if len(_FP_CACHE) > 4096:
                _FP_CACHE.clear()
            _FP_CACHE[key] = fp
    return fp


def _files_fingerprint(layout: Layout, day: date) -> str | None:
    files = sorted(layout.raw_shipments_day(day).glob("*.parquet"))
    if not files:
        return None
    parts = [f"v{INDEX_VERSION}", f"r{DETAIL_ROWS}", pl.__version__]
    for f in files:
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class DayIndex(NamedTuple):
    """A day's index as built (not written)."""

    entries: pl.DataFrame  # field, h, row; sorted by h then field
    ids: pl.Series  # shipment id by row
    details: pl.DataFrame  # DETAIL_COLUMNS by row


def build_index(layout: Layout, day: date) -> DayIndex:
    """The identifier index of one raw day (not written).

    The day's identifier and shown columns are read once; entries carry the shipment's row (an
    id gathered into hash order cost 9 of a 4 M-row day's CPU-seconds and a third of the
    entries' size). A day that repeats a shipment id (ingest keeps one) indexes its first row."""
    raw = scan_raw_shipments(layout, [day])
    names = set(raw.collect_schema().names())
    fields = [(code, kind, col) for code, (_label, kind, col) in FIELDS.items() if col in names]
    shown = [(pl.col(c).cast(pl.String) if c in names else pl.lit(None, pl.String)).alias(c) for c in DETAIL_COLUMNS]
    shown = [
        e.str.slice(0, DESCRIPTION_CHARS) if c == S.DESCRIPTION else e
        for c, e in zip(DETAIL_COLUMNS, shown, strict=True)
    ]
    cols = [
        *dict.fromkeys(
            [S.SHIPMENT_ID, *(col for _code, _kind, col in fields), *(c for c in DETAIL_COLUMNS if c in names)]
        )
    ]
    frame = raw.select(cols).collect()
    ids = frame.get_column(S.SHIPMENT_ID)
    details = frame.select(shown)
    rows = frame.lazy().with_row_index("row")
    if ids.is_duplicated().any():
        rows = rows.filter(pl.col(S.SHIPMENT_ID).is_first_distinct())
    parts = [
        rows.select(pl.lit(code, pl.UInt8).alias("field"), normaliser(kind, col).alias("v"), "row")
        .filter(pl.col("v").is_not_null() & (pl.col("v") != ""))
        .select("field", pl.col("v").hash(seed=_SEED).alias("h"), pl.col("row").cast(pl.UInt32))
        for code, kind, col in fields
    ]
    # parts in field order and a stable sort on the hash alone: (h, field) order without a
    # two-key sort of 40 M rows
    entries = (
        pl.concat(parts).sort("h", maintain_order=True).collect()
        if parts
        else pl.DataFrame(schema={"field": pl.UInt8, "h": pl.UInt64, "row": pl.UInt32})
    )
    return DayIndex(entries, ids, details)


def _sibling(ids_path: Path, prefix: str, suffix: str) -> Path:
    return ids_path.with_name(prefix + ids_path.name.removeprefix("ids-").removesuffix(".parquet") + suffix)


def shipment_ids_path(ids_path: Path) -> Path:
    """The shipment ids by row beside a day's entries file (same fingerprint)."""
    return _sibling(ids_path, "sid-", ".npy")


def _complete(ids_path: Path) -> bool:
    """Whether a day's index files are all there (the entries file is written last; the others
    are checked too, so that a partial copy is rebuilt rather than failing every search)."""
    return ids_path.exists() and details_path(ids_path).exists() and shipment_ids_path(ids_path).exists()


def details_path(ids_path: Path) -> Path:
    """The details file beside a day's entries file (same fingerprint)."""
    return _sibling(ids_path, "rows-", ".arrow")


def index_path(layout: Layout, day: date) -> Path | None:
    """The day's index (its entries file; :func:`details_path` beside it), built now when missing
    or stale (None: no raw data that day).

    Built and cleaned up under the day's :func:`_index_lock`, the fingerprint read again under
    it: a builder of an older fingerprint (the watcher's provisional scoring while the nightly
    ingest lands) never deletes the current index another process has just built and reads; a
    reader that finds its file gone anyway (replaced by a newer one) rebuilds (:func:`_read_index`)."""
    fp = _fingerprint(layout, day)
    if fp is None:
        return None
    folder = index_root(layout) / f"day={day.isoformat()}"
    path = folder / f"ids-{fp}.parquet"
    if _complete(path):
        return path
    with _index_lock(layout, folder):
        fp = _files_fingerprint(layout, day)  # the partition may have changed while we waited
        if fp is None:
            return None
        path = folder / f"ids-{fp}.parquet"
        if not _complete(path):
            _write_index(build_index(layout, day), path)
        current = _files_fingerprint(layout, day)  # ... or while we built
        keep = {path, folder / f"ids-{current}.parquet"}
        keep |= {f(k) for k in keep for f in (details_path, shipment_ids_path)}
        for old in [*folder.glob("ids-*.parquet"), *folder.glob("rows-*.arrow"), *folder.glob("sid-*.npy")]:
            if old not in keep:
                old.unlink(missing_ok=True)
    return path


@contextmanager
def _index_lock(layout: Layout, folder: Path) -> Iterator[None]:
    """An exclusive ``flock`` on the day's index lock file (0600, released when the holder exits)."""
    private_dir(folder, under=layout.home)
    fd = os.open(folder / INDEX_LOCK_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_index(index: DayIndex, path: Path) -> None:
    """The shipment ids and the details, then the entries (their presence marks the index complete)."""
    ids = index.ids.fill_null("").cast(pl.Binary)
    longest = ids.bin.size().max()
    width = longest if isinstance(longest, int) and longest > 0 else 1
    _write_private(
        shipment_ids_path(path), lambda f: np.save(f, ids.to_numpy().astype(f"S{width}"), allow_pickle=False)
    )
    table = index.details.rechunk().to_arrow()
    table = table.cast(pa.schema([pa.field(c, pa.string()) for c in table.column_names]))  # 4-byte offsets

    def details(f: BinaryIO) -> None:
        with ipc.new_file(f, table.schema, options=ipc.IpcWriteOptions(compression="zstd")) as w:
            w.write_table(table, max_chunksize=DETAIL_ROWS)

    _write_private(details_path(path), details)
    # small row groups with statistics: a look-up skips every group that cannot hold its hash
    _write_private(path, lambda f: index.entries.write_parquet(f, row_group_size=ROW_GROUP_ROWS, statistics=True))


def _write_private(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write`` into a 0600 temporary file, renamed to ``path``."""
    tmp = tmp_sibling(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))  # 0600 before any data
    try:
        with open(tmp, "r+b") as f:
            write(f)
        os.chmod(tmp, PRIVATE_FILE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _shipment_ids(ids_path: str | Path, rows: pl.Series) -> pl.Series:
    """The shipment ids of ``rows`` of a day (its memory-mapped id array)."""
    array = np.load(shipment_ids_path(Path(ids_path)), mmap_mode="r", allow_pickle=False)
    picked = array[rows.cast(pl.Int64).to_numpy()]
    return pl.Series(S.SHIPMENT_ID, [b.decode() for b in picked.tolist()], dtype=pl.String)


def _with_ids(found: pl.DataFrame) -> pl.DataFrame:
    """``found`` (``row``, ``_file``) with the shipment id of each row."""
    if found.is_empty():
        return found.with_columns(pl.lit(None, pl.String).alias(S.SHIPMENT_ID))
    parts = [
        part.with_columns(_shipment_ids(f, part.get_column("row")))
        for (f,), part in found.group_by("_file", maintain_order=True)
    ]
    return pl.concat(parts)


def _read_index(
    layout: Layout, days: list[date], query: Callable[[list[str]], pl.DataFrame]
) -> tuple[pl.DataFrame, dict[str, date]]:
    """(``query`` over the index files of ``days``, file -> day; days without raw data left out).
    When a file is gone (a newer index of its day replaced it), the indexes are resolved again
    (rebuilt) and the query rerun rather than failing."""
    for attempt in range(READ_ATTEMPTS):
        paths: dict[str, date] = {}
        for d in days:
            path = index_path(layout, d)
            if path is not None:
                paths[str(path)] = d
        try:
            return query(list(paths)), paths
        except FileNotFoundError:
            if attempt == READ_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def ready_index_path(layout: Layout, day: date) -> Path | None:
    """The day's index file when it is built and current, else None (never builds: a page falls
    back to scanning the day while :func:`index_path` builds it elsewhere)."""
    fp = _fingerprint(layout, day)
    if fp is None:
        return None
    path = index_root(layout) / f"day={day.isoformat()}" / f"ids-{fp}.parquet"
    return path if _complete(path) else None


def column_candidates(
    layout: Layout, days: list[date], values: dict[str, str]
) -> tuple[pl.LazyFrame | None, list[date]]:
    """Shipments of ``days`` whose indexed column (a :data:`FIELDS` column) may equal its value in
    ``values`` (column -> raw value): the index holds normalised values, so the (arrival date,
    shipment id) pairs returned are a superset of the exact matches, to be checked on the raw
    rows. Second: the days without a ready index (the caller scans them in full); ``None`` pairs
    (and every day to scan) when no day has an index or a value normalises to nothing (it is in
    no index)."""
    codes = {col: code for code, (_l, _k, col) in FIELDS.items() if col in values}
    if not values or len(codes) < len(values):  # a column no index holds: scan
        return None, list(days)
    # every value normalised and hashed in one Polars call (a call costs ~1 ms on a busy machine)
    q = pl.DataFrame(
        {f"c{code}": [str(values[col])] for col, code in codes.items()},
        schema={f"c{code}": pl.String for code in codes.values()},
    )
    normal = q.select([normaliser(FIELDS[code][1], f"c{code}").fill_null("") for code in codes.values()])
    if any(not normal.item(0, i) for i in range(normal.width)):
        return None, list(days)
    hashes = normal.select(pl.all().hash(seed=_SEED)).row(0)
    wanted = dict(zip(codes.values(), hashes, strict=True))
    cond = pl.any_horizontal(
        [(pl.col("field") == code) & (pl.col("h") == pl.lit(h, pl.UInt64)) for code, h in wanted.items()]
    )
    for attempt in range(READ_ATTEMPTS):
        ready: dict[str, date] = {}
        missing: list[date] = []
        for d in days:
            path = ready_index_path(layout, d)
            if path is None:
                missing.append(d)
            else:
                ready[str(path)] = d
        if not ready:
            return None, list(days)
        day_of = pl.DataFrame(
            {"_file": list(ready), S.ARRIVAL_DATE: list(ready.values())},
            schema={"_file": pl.String, S.ARRIVAL_DATE: pl.Date},
        )
        try:  # read now: a file replaced by a newer index of its day is resolved again, not a failure
            found = pl.scan_parquet(list(ready), include_file_paths="_file").filter(cond).select("row", "_file")
            pairs = _with_ids(found.collect()).join(day_of, on="_file").select(S.ARRIVAL_DATE, S.SHIPMENT_ID).unique()
        except FileNotFoundError:
            if attempt == READ_ATTEMPTS - 1:
                raise
            continue
        return pairs.lazy(), missing
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Hit:
    day: date
    shipment_id: str
    field: str
    kind: str


def _hits(layout: Layout, days: list[date], wanted: dict[str, str]) -> pl.DataFrame:
    """Every entry of ``days``' indexes with a field of a kind in ``wanted`` equal to its
    normalised value: (arrival date, field code, the shipment's row in the day's index, the
    day's entries file)."""
    schema = {S.ARRIVAL_DATE: pl.Date, "field": pl.UInt8, "row": pl.UInt32, "_file": pl.String}
    if not wanted:
        return pl.DataFrame(schema=schema)
    by_hash: dict[int, list[int]] = {}
    hashes = dict(zip(wanted, _hash(list(wanted.values())), strict=True))
    for code, (_label, kind, _col) in FIELDS.items():
        if kind in hashes:
            by_hash.setdefault(hashes[kind], []).append(code)
    cond = pl.lit(False)
    for h, codes in by_hash.items():
        cond = cond | ((pl.col("h") == pl.lit(h, pl.UInt64)) & pl.col("field").is_in(codes))

    def query(files: list[str]) -> pl.DataFrame:
        if not files:
            return pl.DataFrame(schema={k: v for k, v in schema.items() if k != S.ARRIVAL_DATE})
        # one scan over every day's index: Polars reads the files in parallel, each file's footer
        # and only the row groups whose statistics can hold a wanted hash
        return pl.scan_parquet(files, include_file_paths="_file").filter(cond).select("field", "row", "_file").collect()

    found, paths = _read_index(layout, sorted(days, reverse=True), query)
    day_of = pl.DataFrame(
        {"_file": list(paths), S.ARRIVAL_DATE: list(paths.values())},
        schema={"_file": pl.String, S.ARRIVAL_DATE: pl.Date},
    )
    return found.join(day_of, on="_file").select(list(schema))


def lookup(layout: Layout, days: list[date], wanted: dict[str, str]) -> list[Hit]:
    """Shipments of ``days`` with a field of a kind in ``wanted`` equal to its normalised value
    (newest day first, at most :data:`MAX_RESULTS` entries)."""
    found = _hits(layout, days, wanted).sort(S.ARRIVAL_DATE, "row", "field", descending=[True, False, False])
    found = _with_ids(found.head(MAX_RESULTS))
    return [
        Hit(d, sid, FIELDS[code][0], FIELDS[code][1])
        for d, sid, code in found.select(S.ARRIVAL_DATE, S.SHIPMENT_ID, "field").iter_rows()
    ]


def search_days(layout: Layout, last: date | None = None, n_days: int = SEARCH_DAYS) -> list[date]:
    """The raw days of the last ``n_days`` up to the newest (or ``last``)."""
    days = layout.raw_days()
    if not days:
        return []
    end = last or max(days)
    start = end - timedelta(days=n_days - 1)
    return [d for d in days if start <= d <= end]


@dataclass(frozen=True)
class Found:
    """One page of a search's answer."""

    wanted: dict[str, str]  # kind -> normalised query, the kinds searched
    rows: pl.DataFrame  # the page: RESULT_SCHEMA, newest day first
    total: int  # shipments found in all
    offset: int  # rows of the answer before this page


RESULT_SCHEMA = pl.Schema(
    {
        S.ARRIVAL_DATE: pl.Date(),
        S.SHIPMENT_ID: pl.String(),
        "matched": pl.String(),
        S.CONSIGNEE_NAME: pl.String(),
        S.SHIPPER_NAME: pl.String(),
        S.DESCRIPTION: pl.String(),
        S.PORT_OF_ENTRY: pl.String(),
    }
)


def find(
    layout: Layout, query: str, kind: str = "", n_days: int = SEARCH_DAYS, offset: int = 0, limit: int = PAGE_ROWS
) -> Found:
    """The shipments of the last ``n_days`` with an identifier equal to ``query`` (as a ``kind``,
    or any kind it can be): all counted, newest day first (then in the day's ingest order), and
    rows ``offset`` to ``offset + limit`` of them read from the days' index files (no raw day
    opened: what a row shows is in the index)."""
    wanted = query_kinds(query, kind)
    hits = _hits(layout, search_days(layout, n_days=n_days), wanted)
    labels = pl.DataFrame(
        {"field": list(FIELDS), "_label": [f[0] for f in FIELDS.values()]},
        schema={"field": pl.UInt8, "_label": pl.String},
    )
    ships = (
        hits.join(labels, on="field")
        .sort("field")
        .group_by(S.ARRIVAL_DATE, "_file", "row", maintain_order=True)
        .agg(pl.col("_label").unique(maintain_order=True).str.join(", ").alias("matched"))
        .sort(S.ARRIVAL_DATE, "row", descending=[True, False])
    )
    offset = max(0, offset)
    page = ships.slice(offset, max(0, limit))
    shown = [
        _details(f, part).with_columns(_shipment_ids(f, part.get_column("row")))
        for (f,), part in page.group_by("_file", maintain_order=True)
    ]
    rows = (
        pl.concat(shown)
        if shown
        else page.with_columns(pl.lit(None, pl.String).alias(c) for c in (S.SHIPMENT_ID, *DETAIL_COLUMNS))
    )
    return Found(wanted, rows.select(list(RESULT_SCHEMA)).cast(RESULT_SCHEMA), ships.height, offset)


def _details(ids_file: str, part: pl.DataFrame) -> pl.DataFrame:
    """``part`` (rows of one day) with each row's details, from the record batches that hold them."""
    at: dict[int, list[int]] = {}
    for r in part.get_column("row").to_list():
        at.setdefault(r // DETAIL_ROWS, []).append(r % DETAIL_ROWS)
    groups = sorted(at)
    got = read_groups(details_path(Path(ids_file)), groups, DETAIL_COLUMNS, [at[g] for g in groups])
    order = pl.Series("row", [g * DETAIL_ROWS + r for g in groups for r in at[g]], dtype=pl.UInt32)
    return part.join(got.with_columns(order), on="row", how="left", maintain_order="left")


def search(
    layout: Layout, query: str, kind: str = "", n_days: int = SEARCH_DAYS
) -> tuple[dict[str, str], pl.DataFrame]:
    """(normalised query per kind, one row per matching shipment: day, shipment id, the fields
    that matched, consignee, shipper, description, port), newest day first, the first
    :data:`MAX_RESULTS` (:func:`find` counts them all and pages)."""
    found = find(layout, query, kind, n_days, limit=MAX_RESULTS)
    return found.wanted, found.rows


def watchlisted_ids(layout: Layout, day: date, entries: list[tuple[str, str]]) -> set[str]:
    """Shipment ids of ``day`` that carry a watchlisted (kind, normalised value)."""
    out: set[str] = set()
    by_kind: dict[str, list[str]] = {}
    for kind, value in entries:
        by_kind.setdefault(kind, []).append(value)
    if not by_kind:
        return out
    cond = pl.lit(False)
    for kind, values in by_kind.items():
        codes = [c for c, f in FIELDS.items() if f[1] == kind]
        cond = cond | (pl.col("h").is_in(pl.Series(_hash(values), dtype=pl.UInt64)) & pl.col("field").is_in(codes))

    def query(files: list[str]) -> pl.DataFrame:
        if not files:
            return pl.DataFrame(schema={S.SHIPMENT_ID: pl.String})
        found = pl.scan_parquet(files, include_file_paths="_file").filter(cond).select("row", "_file").collect()
        return _with_ids(found)

    return set(_read_index(layout, [day], query)[0][S.SHIPMENT_ID].to_list())


WATCHLIST_CODE = "WATCHLIST"


def with_watchlist_reason(scored: pl.DataFrame, flagged: set[str], max_reasons: int = 5) -> pl.DataFrame:
    """``WATCHLIST`` first among the reasons of the flagged shipments (scores unchanged: a flag
    is a reason to look, as a rule without a floor is)."""
    if not flagged or S.REASONS not in scored.columns:
        return scored
    hit = pl.col(S.SHIPMENT_ID).is_in(list(flagged))
    return scored.with_columns(
        pl.when(hit)
        .then(
            pl.concat_list(
                pl.lit([WATCHLIST_CODE], pl.List(pl.String)), pl.col(S.REASONS).list.set_difference([WATCHLIST_CODE])
            ).list.head(max_reasons)
        )
        .otherwise(pl.col(S.REASONS))
        .alias(S.REASONS)
    )


def watchlist_step(layout: Layout, settings, day: date, scored: pl.DataFrame) -> pl.DataFrame:
    """The nightly hook: flag the day's shipments that carry an identifier on the watchlist as
    it stood at the day's cut-off (:func:`riskpipe.cases.cutoff`)."""
    from riskpipe.cases import CaseStore, cutoff

    entries = CaseStore(settings.db_url).watchlist_at(cutoff(day))
    return with_watchlist_reason(scored, watchlisted_ids(layout, day, entries))
