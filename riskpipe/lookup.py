"""Per-day look-up files for the workbench's shipment page: one shipment's row by id, and the
shipments sharing an identifier with it, without scanning the day.

A raw partition holds a day's rows in ingest order: a 4 M-row day is about 40 row groups whose
shipment-id ranges overlap, so finding one id decodes the whole day (about 1 s), and finding the
shipments that share a phone or an address with it scans seven columns of the day. Built once per
day (by the nightly after publication, else on the workbench's first need), under
``<home>/index/lookup/day=D/``, named by the raw partition's fingerprint (a re-ingested day gets
new files):

- ``ids-<fp>.npy``: the day's shipment ids, sorted, as fixed-width bytes: memory-mapped, a
  binary search (``numpy.searchsorted``) gives an id's row without reading anything else.
- ``rows-<fp>.arrow``: the day's raw rows in that order, an Arrow IPC file (lz4) in record
  batches of :data:`LOOKUP_ROWS` rows: a look-up decompresses the one batch holding the row
  (:func:`read_rows`). A Parquet copy cost 10 ms of CPU a look-up (decoding a 4,096-row group of
  every column); the memory-mapped batch about 0.1 ms (1 ms with zstd).
- ``links_h``/``links_field``/``links_row-<fp>.npy``: one entry for every non-empty value of
  :data:`LINK_FIELDS`: the 64-bit hash of the value as typed (the page links exact values), the
  field, the row in ``ids``; sorted by hash, memory-mapped, so a look-up is a binary search
  (:func:`link_candidates`; the caller checks the exact values on the rows).
- ``scores-<fp>.arrow`` and ``scores_ids-<fp>.npy``: the day's published scores, the same way.

``ids`` is written last: its presence marks a complete set. Files are 0600 in 0700 folders (they
hold personal data).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.store import PRIVATE_FILE, Layout, ensure_raw_complete, private_dir, scan_raw_shipments, tmp_sibling

LOOKUP_VERSION = 3  # 3: memory-mapped ids, links and Arrow IPC rows (lz4) (2: the scores sorted copy)
LOOKUP_ROWS = 256  # rows per record batch of a sorted copy: one look-up decompresses this many rows
BATCH_ROWS_KEY = b"riskpipe_batch_rows"  # schema metadata of a sorted copy: its batch length
#: zstd: half the size, but 1 ms of CPU a batch (a context per buffer) against 0.1
IPC_COMPRESSION: Literal["lz4", "zstd"] = "lz4"
BUILD_LOCK_FILE = ".build.lock"  # under lookup_root: one build at a time across processes
_SEED = 31
#: the identifier columns the shipment page links on (its network and its parties' history).
LINK_FIELDS: dict[str, int] = {
    S.CONSIGNEE_ADDRESS_KEY: 1,
    S.CONSIGNEE_PHONE: 2,
    S.CONSIGNEE_EMAIL: 3,
    S.SHIPPER_PHONE: 4,
    S.SHIPPER_EMAIL: 5,
    S.ACCOUNT_IP: 6,
    S.SELLER_ID: 7,
    S.SHIPPER_NAME: 8,
}
#: kind -> file suffix of a day's look-up files (``ids`` last: written last, marks the set complete)
KINDS = {
    "rows": "arrow",
    "links_h": "npy",
    "links_field": "npy",
    "links_row": "npy",
    "scores": "arrow",
    "scores_ids": "npy",
    "ids": "npy",
}
log = logging.getLogger("riskpipe.lookup")
_KEYS_LOCK = threading.Lock()
_BATCH_LOCK = threading.Lock()
_PATHS: dict[tuple[str, date, str], dict[str, Path]] = {}
_FP_CACHE: dict[tuple[str, int, int, tuple[int, int, int]], str | None] = {}
SETTLE_NS = 2_000_000_000
_OPEN: OrderedDict[str, object] = OrderedDict()  # path -> memory-mapped array or IPC reader
OPEN_CACHE_SIZE = 64  # memory maps kept open (a handful of files per day)


def lookup_root(layout: Layout) -> Path:
    return layout.home / "index" / "lookup"


def day_fingerprint(layout: Layout, day: date) -> str | None:
    """The identity of a day's raw partition and published scores (None: no raw data that day):
    :func:`_day_fingerprint`, reused while the raw partition's folder (a file added, removed or
    renamed in changes its mtime) and the scores file are unchanged and older than two seconds
    (coarse filesystem clocks): one stat each instead of a listing and a stat per file, for each
    of the 60 days a shipment page looks at."""
    folder, scores = _day_files(layout, day)
    try:
        fs = folder.stat()
    except OSError:
        return None
    try:
        ss = scores.stat()
        sk: tuple[int, int, int] = (ss.st_mtime_ns, ss.st_ino, ss.st_size)
    except OSError:
        sk = (0, 0, 0)
    key = (str(folder), fs.st_mtime_ns, fs.st_ino, sk)
    with _KEYS_LOCK:
        if key in _FP_CACHE:
            return _FP_CACHE[key]
    fp = _day_fingerprint(layout, day)
    if time.time_ns() - max(fs.st_mtime_ns, sk[0]) > SETTLE_NS:
        with _KEYS_LOCK:
            _FP_CACHE[key] = fp
            if len(_FP_CACHE) > 4096:
                _FP_CACHE.clear()
    return fp


_DAY_FILES: dict[tuple[str, date], tuple[Path, Path]] = {}


def _day_files(layout: Layout, day: date) -> tuple[Path, Path]:
    """The day's raw partition folder and published scores file, built once per home and day (a
    shipment page fingerprints its 30 history days: building their paths was most of that cost)."""
    key = (str(layout.home), day)
    hit = _DAY_FILES.get(key)
    if hit is None:
        hit = (layout.raw_shipments_day(day), _scores_file(layout, day))
        with _KEYS_LOCK:
            if len(_DAY_FILES) > 4096:
                _DAY_FILES.clear()
            _DAY_FILES[key] = hit
    return hit


def raw_days(layout: Layout) -> list[date]:
    """:meth:`Layout.raw_days` (arrival days with at least one raw file, ascending), listed again
    only when the raw store's folder or a partition's folder changed (one stat each, through
    :func:`_raw_files`) instead of a glob per partition on every shipment page."""
    ensure_raw_complete(layout)
    base = layout.raw_shipments
    try:
        st = base.stat()
    except OSError:
        return []
    key = (str(base), st.st_mtime_ns, st.st_ino)
    with _KEYS_LOCK:
        listed = _RAW_PARTITIONS.get(key)
    if listed is None:
        listed = []
        for p in base.glob("arrival_date=*"):
            try:
                listed.append(date.fromisoformat(p.name.split("=", 1)[1]))
            except ValueError:
                continue
        listed.sort()
        if time.time_ns() - st.st_mtime_ns > SETTLE_NS:
            with _KEYS_LOCK:
                if len(_RAW_PARTITIONS) > 64:
                    _RAW_PARTITIONS.clear()
                _RAW_PARTITIONS[key] = listed
    return [d for d in listed if _raw_files(layout, d)]


_RAW_PARTITIONS: dict[tuple[str, int, int], list[date]] = {}


def _day_fingerprint(layout: Layout, day: date) -> str | None:
    """The raw partition's files and the day's published scores (name, size, mtime, inode) and
    the Polars version (its hash): a re-ingested or re-scored day gets new files."""
    files = sorted(layout.raw_shipments_day(day).glob("*.parquet"))
    if not files:
        return None
    parts = [f"v{LOOKUP_VERSION}", pl.__version__]
    scores = _scores_file(layout, day)
    if scores.exists():
        st = scores.stat()
        parts.append(f"scores:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
    for f in files:
        st = f.stat()
        parts.append(f"{f.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _scores_file(layout: Layout, day: date) -> Path:
    return layout.day_dir(layout.scores, day) / "scores.parquet"


def _paths(layout: Layout, day: date, fp: str) -> dict[str, Path]:
    """The day's file names (a copy); kept per fingerprint: a page asks for 30 days' (7 paths a
    day, about a millisecond of path building a page)."""
    key = (str(layout.home), day, fp)
    with _KEYS_LOCK:
        hit = _PATHS.get(key)
    if hit is None:
        folder = lookup_root(layout) / f"day={day.isoformat()}"
        hit = {k: folder / f"{k}-{fp}.{ext}" for k, ext in KINDS.items()}
        with _KEYS_LOCK:
            if len(_PATHS) > 4096:
                _PATHS.clear()
            _PATHS[key] = hit
    return dict(hit)


def ready_lookup(layout: Layout, day: date) -> dict[str, Path] | None:
    """The day's look-up files when built and current, else None (never builds). ``scores`` and
    ``scores_ids`` are absent when the day had no published scores."""
    fp = day_fingerprint(layout, day)
    if fp is None:
        return None
    paths = _paths(layout, day, fp)
    if not paths["ids"].exists():  # written last
        return None
    return {k: p for k, p in paths.items() if not k.startswith("scores") or p.exists()}


def _private_tmp(path: Path) -> Path:
    tmp = tmp_sibling(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))  # 0600 before any data
    return tmp


def build_lookup(layout: Layout, day: date) -> dict[str, Path] | None:
    """The day's look-up files, built now when missing or stale (None: no raw data that day).
    Called by the nightly once the day is published, so the first page of the day finds them.
    One build at a time per home, across processes (workbench workers, the nightly): the others
    wait on :data:`BUILD_LOCK_FILE` and then find the files built."""
    fp = day_fingerprint(layout, day)
    if fp is None:
        return None
    ready = ready_lookup(layout, day)
    if ready is not None:
        return ready
    with _build_lock(layout):
        return ready_lookup(layout, day) or _build(layout, day, fp)


@contextmanager
def _build_lock(layout: Layout) -> Iterator[None]:
    """An exclusive ``flock`` on the home's look-up build lock (released when the holder exits)."""
    root = private_dir(lookup_root(layout), under=layout.home)
    fd = os.open(root / BUILD_LOCK_FILE, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


#: Rows of a day (or of its scores) read and sorted at a time by :func:`_build` (rounded down to a
#: multiple of LOOKUP_ROWS): the whole 4 M-row day sorted at once held 7.2 GB. A range's read, sort
#: and Arrow copy hold about 1.8 KB a row: 500 k-row ranges peaked at 1.4 GB on a 1 M-row day,
#: 131 k-row ranges at 0.65-0.71 GB whatever the day's size, for about 15% more CPU.
BUILD_CHUNK_ROWS = 131_072
#: sorted rows read ahead of what is written (:func:`_write_sorted_copy`): at least the 512 rows
#: (two batches) over which the IPC writer pads a batch's buffers to 64 bytes.
LOOKAHEAD_ROWS = 1_024
#: ids kept (every k-th, streamed) to place the bounds of the id ranges: exact up to this many rows.
SAMPLE_IDS = 100_000
#: link entries sorted at a time: they are spilled to hash-range parts of about this many (4 M rows
#: give about 22 M entries; a part of 2 M entries is sorted in about 100 MB).
LINK_PART_ENTRIES = 2_000_000
#: rows of the day decoded at a time by Arrow's Parquet reader in :meth:`_RangeSpill.split` (the
#: 1 M-row bench day read alone peaked at 461 MB in 131 k-row batches, 266 MB in 32 k-row ones);
#: the split still cuts BUILD_CHUNK_ROWS rows at a time (fewer, larger pieces).
SPLIT_READ_ROWS = 32_768
_ENTRY = np.dtype([("h", "<u8"), ("field", "u1"), ("row", "<u4")])  # a spilled link entry: 13 bytes


def _chunk_rows(batch_rows: int) -> int:
    return max(batch_rows, BUILD_CHUNK_ROWS // batch_rows * batch_rows)


def _build(layout: Layout, day: date, fp: str) -> dict[str, Path]:
    """Write the day's look-up files (under :func:`_build_lock`) in memory bounded by
    :data:`BUILD_CHUNK_ROWS` and :data:`LINK_PART_ENTRIES`, whatever the day's size: the bounds of
    the id ranges come from a sample of the ids streamed by record batch; one more pass over the
    day splits its rows by range into a spill file (:class:`_RangeSpill`: the day is read twice,
    not once per range; up to :data:`SPLIT_MIN_RANGES` ranges, each range is filtered from the
    day instead); each range's rows are read back, sorted and written (the rows, their ids
    appended to ``ids``, their link entries spilled to hash-range parts), then each part is sorted
    and appended to the link files; the scores the same way. The ``.npy`` files and the scores
    copy are byte for byte those of the whole day sorted at once; the rows copy holds the same
    record batches (values, sizes, schema and metadata), but its text buffers' bytes (under nulls,
    padding, so their lengths) follow how the strings were read and sorted: the main code's own
    rows copy differed from the whole day written at once in the same way (split ranges carry no
    bytes under nulls: the 4 M-row day's copy is 1.18 GB, filtered ranges' 1.35 GB)."""
    paths = _paths(layout, day, fp)
    folder = paths["rows"].parent
    private_dir(folder, under=layout.home)
    # builds run one at a time (the lock): temporary files here are a killed build's (the spill
    # of the day's rows, part files of its link entries: about the size of the day)
    for left in folder.glob(".*.tmp-*"):
        left.unlink(missing_ok=True)
    scan = scan_raw_shipments(layout, [day])
    columns = scan.collect_schema().names()
    fields = [(col, code) for col, code in LINK_FIELDS.items() if col in columns]
    chunk = _chunk_rows(LOOKUP_ROWS)
    raw_files = sorted(layout.raw_shipments_day(day).glob("*.parquet"))
    n, width, bounds = _id_ranges(raw_files, chunk)
    ids_tmp = _private_tmp(paths["ids"])
    spill: _LinkSpill | None = None
    ranges: _RangeSpill | _FilteredRanges | None = None
    try:
        ranges = _range_reader(scan, raw_files, bounds, chunk, folder / f".rows-{fp}")
        spill = _LinkSpill(folder, fp, n * len(fields))
        with open(ids_tmp, "wb") as ids_out:
            _write_npy_header(ids_out, np.dtype(f"S{width}"), n)

            def each_range(part: pl.DataFrame, offset: int) -> None:
                assert spill is not None
                ids_out.write(_id_bytes(part.get_column(S.SHIPMENT_ID), width))
                for col, code in fields:
                    spill.add(_link_entries(part, offset, col, code))

            _write_sorted_copy(ranges.read, bounds, paths["rows"], LOOKUP_ROWS, each_range, n)
        ranges.close()
        spill.write(paths)
        scores_file = _scores_file(layout, day)
        if scores_file.exists():  # the published scores, the same way (one batch a look-up)
            _write_scores(scores_file, paths, chunk)
        else:
            paths = {k: p for k, p in paths.items() if not k.startswith("scores")}
        os.replace(ids_tmp, paths["ids"])  # last: its presence marks the set complete
    finally:
        ids_tmp.unlink(missing_ok=True)
        if spill is not None:
            spill.close()
        if ranges is not None:
            ranges.close()
    for old in folder.iterdir():
        if old.suffix in (".npy", ".arrow", ".parquet") and old not in paths.values():
            old.unlink(missing_ok=True)
    return paths


def _write_scores(scores_file: Path, paths: dict[str, Path], chunk: int) -> None:
    """The published scores sorted by id (``scores``) and their ids (``scores_ids``), one id
    range at a time (the published file need not be sorted by id)."""
    n, width, bounds = _id_ranges([scores_file], chunk)
    tmp = _private_tmp(paths["scores_ids"])
    ranges: _RangeSpill | _FilteredRanges | None = None
    try:
        spill_at = paths["scores"].parent / f".{paths['scores'].stem}"
        ranges = _range_reader(pl.scan_parquet(scores_file), [scores_file], bounds, chunk, spill_at)
        with open(tmp, "wb") as out:
            _write_npy_header(out, np.dtype(f"S{width}"), n)

            def each_range(part: pl.DataFrame, offset: int) -> None:
                out.write(_id_bytes(part.get_column(S.SHIPMENT_ID), width))

            _write_sorted_copy(ranges.read, bounds, paths["scores"], LOOKUP_ROWS, each_range, n)
        os.replace(tmp, paths["scores_ids"])
    finally:
        tmp.unlink(missing_ok=True)
        if ranges is not None:
            ranges.close()


def _id_ranges(files: list[Path], chunk: int) -> tuple[int, int, list[str]]:
    """The number of rows of ``files``, their longest id in UTF-8 bytes (at least 1: the width of
    the ids array) and the bounds of id ranges of about ``chunk`` rows (each range: [previous
    bound, bound)), reading the id column one record batch of at most ``chunk`` rows at a time.
    The bounds are quantiles of every k-th id (k: at most :data:`SAMPLE_IDS` ids kept), so a
    range holds ``chunk`` rows exactly up to SAMPLE_IDS rows, about as many above."""
    total = sum(pq.read_metadata(f).num_rows for f in files)
    k = max(1, -(-total // SAMPLE_IDS))
    n = width = 0
    kept: list[pa.Array] = []
    for f in files:
        with pq.ParquetFile(f) as pf:
            for batch in pf.iter_batches(batch_size=chunk, columns=[S.SHIPMENT_ID], use_threads=False):
                col = batch.column(0).cast(pa.large_string())
                if len(col):
                    width = max(width, pc.max(pc.binary_length(col)).as_py() or 0)
                    kept.append(col.take(pa.array(np.arange((-n) % k, len(col), k))))
                n += len(col)
    sample = pl.Series(S.SHIPMENT_ID, pa.chunked_array(kept, pa.large_string()), dtype=pl.String)
    sample = sample.drop_nulls().sort()
    bounds: list[str] = []
    for i in range(chunk, n, chunk):
        j = i // k
        if j < sample.len() and (not bounds or sample[j] > bounds[-1]):
            bounds.append(sample[j])
    return n, width or 1, bounds


def _id_bytes(ids: pl.Series, width: int) -> bytes:
    """Sorted ids as fixed-width UTF-8 bytes (NumPy compares them bytewise, as Polars sorts)."""
    return np.array([s.encode() for s in ids.fill_null("").to_list()], dtype=f"S{width}").tobytes()


def _write_npy_header(fh: BinaryIO, dtype: np.dtype, rows: int) -> None:
    """The ``.npy`` header ``numpy.save`` writes for a 1-d array of ``rows`` ``dtype`` values (the
    data follows it, appended one id range or one link part at a time)."""
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows,)}
    np.lib.format.write_array_header_1_0(fh, header)


def _link_entries(part: pl.DataFrame, offset: int, col: str, code: int) -> pl.DataFrame:
    """A range's entries of one :data:`LINK_FIELDS` column: (hash, field, row), the row counted
    from ``offset`` in the day's id order (``part`` is the range's rows, sorted by id)."""
    return (
        part.select(
            pl.lit(code, pl.UInt8).alias("field"),
            pl.col(col).cast(pl.String).alias("v"),
            pl.int_range(offset, offset + part.height, dtype=pl.UInt32).alias("row"),
        )
        .filter(pl.col("v").is_not_null() & (pl.col("v") != ""))
        .select(pl.col("v").hash(seed=_SEED).alias("h"), "field", "row")
    )


class _LinkSpill:
    """The day's link entries spilled to ``2**bits`` hash-range part files (0600, raw
    :data:`_ENTRY` records), ``bits`` chosen so a part holds about :data:`LINK_PART_ENTRIES`
    of ``most`` entries; :meth:`write` sorts each part by (hash, field, row) and appends it to
    the three link files in part order: the whole day's entries sorted."""

    def __init__(self, folder: Path, fp: str, most: int) -> None:
        self.bits = max(0, math.ceil(math.log2(max(1, most) / LINK_PART_ENTRIES)))
        self.files = [folder / f".links-{fp}.part{p}.tmp-{uuid.uuid4().hex[:8]}" for p in range(2**self.bits)]
        self.handles: list[BinaryIO] = []
        self.counts = np.zeros(len(self.files), dtype=np.int64)
        try:
            for f in self.files:
                os.close(os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
                self.handles.append(open(f, "ab"))  # noqa: SIM115 - closed by close()
        except BaseException:
            self.close()
            raise

    def add(self, entries: pl.DataFrame) -> None:
        rec = np.empty(entries.height, dtype=_ENTRY)
        rec["h"] = entries.get_column("h").cast(pl.UInt64).to_numpy()
        rec["field"] = entries.get_column("field").cast(pl.UInt8).to_numpy()
        rec["row"] = entries.get_column("row").cast(pl.UInt32).to_numpy()
        if self.bits == 0:
            self.handles[0].write(rec.tobytes())
            self.counts[0] += rec.size
            return
        part = (rec["h"] >> np.uint64(64 - self.bits)).astype(np.int64)
        rec = rec[np.argsort(part, kind="stable")]
        counts = np.bincount(part, minlength=len(self.files))
        start = 0
        for p in np.flatnonzero(counts):
            self.handles[p].write(rec[start : start + counts[p]].tobytes())
            start += int(counts[p])
        self.counts += counts

    def write(self, paths: dict[str, Path]) -> None:
        for h in self.handles:
            h.close()
        total = int(self.counts.sum())
        kinds = {"links_h": ("h", np.uint64), "links_field": ("field", np.uint8), "links_row": ("row", np.uint32)}
        tmps: dict[str, Path] = {}
        try:
            with ExitStack() as stack:
                outs = {}
                for kind, (_, dtype) in kinds.items():
                    tmps[kind] = _private_tmp(paths[kind])
                    outs[kind] = stack.enter_context(open(tmps[kind], "wb"))
                    _write_npy_header(outs[kind], np.dtype(dtype), total)
                for f in self.files:
                    part = np.fromfile(f, dtype=_ENTRY)
                    f.unlink()
                    part = part[np.lexsort((part["row"], part["field"], part["h"]))]
                    for kind, (name, dtype) in kinds.items():
                        outs[kind].write(np.ascontiguousarray(part[name], dtype=dtype).tobytes())
                    del part
            for kind in kinds:
                os.replace(tmps[kind], paths[kind])
        finally:
            for tmp in tmps.values():
                tmp.unlink(missing_ok=True)

    def close(self) -> None:
        """Close and remove the part files (after :meth:`write`, or on a failure)."""
        for h in self.handles:
            h.close()
        for f in self.files:
            f.unlink(missing_ok=True)


#: id ranges from which the rows are split into a spill in one pass (:class:`_RangeSpill`) rather
#: than filtered from the files once per range (:class:`_FilteredRanges`): a filter pass cost
#: 0.17 us a row (0.7 s of CPU on the 4 M-row day), the split, spill and read back 2-3 us a row.
#: CPU of the build, 1 M rows (8 ranges): 11.1-11.3 s split, 8.6-9.4 s filtered; 4 M rows (31
#: ranges): 46.6-52.5 s split (median 48.3), 51.1-69.1 s filtered (median 54.9); the filtered
#: work grows with the square of the day (122 ranges at 16 M rows), the split's linearly.
SPLIT_MIN_RANGES = 16


def _range_reader(
    scan: pl.LazyFrame, files: list[Path], bounds: list[str], chunk: int, prefix: Path
) -> _RangeSpill | _FilteredRanges:
    """Reads of ``scan``'s rows (the Parquet ``files``) by id range (``bounds``): below
    :data:`SPLIT_MIN_RANGES` ranges, filtered from the scan per range (fewer reads of the files
    than that), else split in one pass over ``files`` into a spill file named from ``prefix`` (two
    reads of the files, the sample's included)."""
    if len(bounds) + 1 < SPLIT_MIN_RANGES:
        return _FilteredRanges(scan, bounds)
    ranges = _RangeSpill(prefix, bounds, scan.collect_schema())
    try:
        ranges.split(files, chunk)
    except BaseException:
        ranges.close()
        raise
    return ranges


class _FilteredRanges:
    """Range k's rows (range k: [bound k-1, bound k)) by a filter of the whole scan: the files'
    id column decoded once per range (ingest order: the row-group statistics skip nothing)."""

    def __init__(self, scan: pl.LazyFrame, bounds: list[str]) -> None:
        self.scan, self.bounds = scan, bounds

    def read(self, k: int) -> pl.DataFrame:
        cond = pl.lit(True)
        if k > 0:
            cond = cond & (pl.col(S.SHIPMENT_ID) >= self.bounds[k - 1])
        if k < len(self.bounds):  # a null id (ingest keeps none) sorts first: kept by the first range only
            cond = cond & ((pl.col(S.SHIPMENT_ID) < self.bounds[k]) | pl.col(S.SHIPMENT_ID).is_null())
        return self.scan.filter(cond).collect()

    def close(self) -> None:
        """Nothing to remove."""


class _RangeSpill:
    """A day's rows (or its scores') split by id range in one pass over its Parquet files: each
    block of a range's worth of rows is cut by range (range k: [bound k-1, bound k), a null id in
    the first, as a filter on each range placed them) and each range's piece appended to one spill
    file (0600 in the build's 0700 folder, removed by :meth:`close`) as an Arrow IPC stream (lz4),
    its offset and length kept by range. Filtering the raw day once per range decoded its id
    column (ingest order: the row-group statistics skip nothing) that many times: 31 times at 4 M
    rows, 122 at 16 M. One file and one open handle whatever the number of ranges; memory: one
    block (a range's rows) and its pieces; the pieces number (rows / range rows) squared."""

    def __init__(self, prefix: Path, bounds: list[str], schema: pl.Schema) -> None:
        self.bounds = pl.Series("bound", bounds, dtype=pl.String)
        self.schema = schema
        self.pieces: list[list[tuple[int, int]]] = [[] for _ in range(len(bounds) + 1)]
        self.path = prefix.with_name(f"{prefix.name}.ranges.tmp-{uuid.uuid4().hex[:8]}")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        self.size = 0

    def split(self, files: list[Path], chunk: int) -> None:
        """Read ``files`` once, in record batches of at most :data:`SPLIT_READ_ROWS` rows, and
        split them ``chunk`` rows at a time (pieces of about ``chunk`` / ranges rows)."""
        names = list(self.schema)
        held: list[pl.DataFrame] = []
        rows = 0
        for f in files:
            with pq.ParquetFile(f) as pf:
                for batch in pf.iter_batches(batch_size=min(chunk, SPLIT_READ_ROWS), use_threads=False):
                    frame = pl.from_arrow(batch)
                    del batch
                    assert isinstance(frame, pl.DataFrame)
                    if frame.schema != self.schema:  # as Polars' scan of the files reads them
                        frame = frame.select(names).cast(self.schema)
                    held.append(frame)
                    rows += frame.height
                    if rows >= chunk:
                        self._add(pl.concat(held))
                        held, rows = [], 0
                        pa.default_memory_pool().release_unused()
        if held:
            self._add(pl.concat(held))
        pa.default_memory_pool().release_unused()  # else Arrow's pool keeps it beside the sorts' memory

    def _add(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        ids = frame.get_column(S.SHIPMENT_ID)
        at = self.bounds.search_sorted(ids.fill_null(""), side="right").to_numpy().astype(np.int64)
        at[ids.is_null().to_numpy()] = 0
        order = np.argsort(at, kind="stable")
        counts = np.bincount(at, minlength=len(self.pieces))
        frame = frame.select(pl.all().gather(order))
        start = 0
        for k in np.flatnonzero(counts):
            out = io.BytesIO()
            frame.slice(start, int(counts[k])).write_ipc_stream(out, compression=IPC_COMPRESSION)
            data = out.getbuffer()
            written = 0
            while written < len(data):
                written += os.pwrite(self.fd, data[written:], self.size + written)
            self.pieces[k].append((self.size, len(data)))
            self.size += len(data)
            start += int(counts[k])

    def read(self, k: int) -> pl.DataFrame:
        """Range ``k``'s rows (in no particular order)."""
        frames = [
            pl.read_ipc_stream(io.BytesIO(os.pread(self.fd, length, offset))) for offset, length in self.pieces[k]
        ]
        if not frames:
            return pl.DataFrame(schema=self.schema)
        return frames[0] if len(frames) == 1 else pl.concat(frames, rechunk=False)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.path.unlink(missing_ok=True)


def _write_sorted_copy(
    source: Callable[[int], pl.DataFrame],
    bounds: list[str],
    path: Path,
    batch_rows: int,
    each_range: Callable[[pl.DataFrame, int], None],
    rows: int,
) -> int:
    """``rows`` rows sorted by id as an Arrow IPC file (record batches of ``batch_rows`` rows, the
    batch length in the schema metadata, lz4, 0600, renamed in), read (``source(k)``: range k's
    rows, :meth:`_RangeSpill.read` or :meth:`_FilteredRanges.read`) and sorted one id range at a
    time (``bounds``: each range is [previous bound, bound)). ``each_range`` is given each range's
    sorted rows and the position of its first row. Returns the rows written.

    The batches are those ``write_table`` gives for the whole sorted table, whatever the ranges:
    the IPC writer pads a batch's buffers to 64 bytes when its arrays run on past it (and only
    then), so each piece is written as a slice between the batch before it and up to
    :data:`LOOKAHEAD_ROWS` rows after it. Every batch but the last holds ``batch_rows`` rows."""
    tmp = _private_tmp(path)
    writer = None
    read = written = 0
    held: pl.DataFrame | None = None  # sorted rows from `start` on: the last batch written, then the rest
    start = 0
    try:
        for k in range(len(bounds) + 1):
            part = source(k).sort(S.SHIPMENT_ID)
            each_range(part, read)
            read += part.height
            held = part if held is None else pl.concat([held, part])
            del part
            final = k == len(bounds)
            end = read if final else max(written, (read - LOOKAHEAD_ROWS) // batch_rows * batch_rows)
            while written < end or (final and writer is None):
                stop = end
                before = min(batch_rows, written - start)  # none for the first batch: offset 0
                after = min(rows, start + held.height) - stop
                piece = held.slice(written - start - before, before + stop - written + after).rechunk().to_arrow()
                table = piece.slice(before, stop - written)
                table = table.replace_schema_metadata({BATCH_ROWS_KEY: str(batch_rows).encode()})
                if writer is None:
                    options = ipc.IpcWriteOptions(compression=IPC_COMPRESSION)
                    writer = ipc.new_file(str(tmp), table.schema, options=options)
                writer.write_table(table, max_chunksize=max(1, batch_rows))
                written = stop
                del piece, table
            cut = max(0, written - batch_rows - start)  # keep the last batch written: the next piece's prefix
            held = held.slice(cut)
            start += cut
        if read != rows or written != rows:
            raise RiskpipeError(f"{path.parent}: the day's files changed while its look-up files were built")
        assert writer is not None
        writer.close()
        writer = None
        os.chmod(tmp, PRIVATE_FILE)
        os.replace(tmp, path)
    finally:
        if writer is not None:  # a range failed: close the half-written file before removing it
            writer.close()
        tmp.unlink(missing_ok=True)
    return written


def _opened(path: Path, kind: str) -> object:
    """A look-up file opened once per process: a ``.npy`` memory-mapped read-only, an ``.arrow``
    file's reader over a memory map (files are never modified: a rebuild writes new names)."""
    k = str(path)
    with _KEYS_LOCK:
        if k in _OPEN:
            _OPEN.move_to_end(k)
            return _OPEN[k]
    if kind == "npy":
        value: object = np.load(k, mmap_mode="r", allow_pickle=False)
    else:
        reader = ipc.open_file(pa.memory_map(k), options=ipc.IpcReadOptions(use_threads=False))  # one small batch
        if reader.num_record_batches:
            reader.get_batch(0)  # the reader loads its dictionaries on a first read: here, not in a race
        value = reader
    with _KEYS_LOCK:
        _OPEN[k] = value
        while len(_OPEN) > OPEN_CACHE_SIZE:
            _OPEN.popitem(last=False)
    return value


def _reader(path: Path) -> ipc.RecordBatchFileReader:
    r = _opened(path, "arrow")
    assert isinstance(r, ipc.RecordBatchFileReader)
    return r


def _array(path: Path) -> np.ndarray:
    a = _opened(path, "npy")
    assert isinstance(a, np.ndarray)
    return a


def _positions(ids: np.ndarray, shipment_ids: list[str]) -> list[int]:
    """Rows of ``shipment_ids`` in a sorted id array (ids not there left out), ascending."""
    out = set()
    for sid in shipment_ids:
        b = sid.encode()
        if ids.size == 0 or len(b) > ids.dtype.itemsize:
            continue
        i = int(np.searchsorted(ids, b, side="left"))
        if i < ids.size and ids[i] == b:
            out.add(i)
    return sorted(out)


def row_groups_for(paths: dict[str, Path], shipment_ids: list[str], kind: str = "rows") -> list[int]:
    """The record batches of a sorted copy (``rows`` or ``scores``) that hold ``shipment_ids``
    (one per id at most; ids the day does not have need none)."""
    return sorted(_rows_by_batch(paths, shipment_ids, kind))


def _rows_by_batch(paths: dict[str, Path], shipment_ids: list[str], kind: str) -> dict[int, list[int]]:
    """batch -> rows within it of ``shipment_ids`` (ascending) in a sorted copy."""
    size = _batch_rows(paths[kind])
    ids = _array(paths["ids" if kind == "rows" else f"{kind}_ids"])
    out: dict[int, list[int]] = {}
    for p in _positions(ids, shipment_ids):
        out.setdefault(p // size, []).append(p % size)
    return out


def _batch_rows(path: Path) -> int:
    meta = _reader(path).schema.metadata or {}
    return int(meta.get(BATCH_ROWS_KEY, b"0")) or LOOKUP_ROWS


def columns_of(paths: dict[str, Path], kind: str = "rows") -> list[str]:
    """The columns of a sorted copy (the day's raw columns, or the scores'), in their order."""
    return list(_reader(paths[kind]).schema.names)


def read_groups(
    rows_path: Path, groups: list[int], columns: list[str], rows: list[list[int]] | None = None
) -> pl.DataFrame:
    """Those record batches of a sorted copy, and only those (``columns`` of them; with ``rows``,
    only those rows of each batch, taken before any conversion)."""
    reader = _reader(rows_path)
    if groups:
        with _BATCH_LOCK:  # readers are shared by the page threads; a batch is read in 0.1 ms
            batches = [reader.get_batch(g).select(columns) for g in groups]
        if rows is not None:
            batches = [b.take(pa.array(r, pa.int32())) for b, r in zip(batches, rows, strict=True)]
        table = pa.Table.from_batches(batches)
    else:
        table = reader.schema.empty_table().select(columns)
    out = pl.from_arrow(table.replace_schema_metadata(None))
    assert isinstance(out, pl.DataFrame)
    return out


def read_rows(
    paths: dict[str, Path], shipment_ids: list[str], columns: list[str] | None = None, kind: str = "rows"
) -> pl.DataFrame:
    """The rows of ``shipment_ids`` from a day's sorted copy (``rows``: the raw rows; ``scores``:
    the published scores), in id order, reading only the record batches that hold them (ids
    the day does not have are left out)."""
    out = columns_of(paths, kind) if columns is None else columns
    at = _rows_by_batch(paths, list(shipment_ids), kind)
    groups = sorted(at)
    return read_groups(paths[kind], groups, out, [at[g] for g in groups] if groups else None)


def link_candidates(paths: dict[str, Path], values: dict[str, str]) -> pl.DataFrame:
    """``(field column, shipment_id)`` of the day's shipments whose :data:`LINK_FIELDS` column
    hashes as its value in ``values`` (column -> value as typed): a superset of the exact matches
    (hash collisions), to be checked on the rows. A binary search per value in the memory-mapped
    entries (no file read beyond the pages touched)."""
    codes = {col: LINK_FIELDS[col] for col in values if col in LINK_FIELDS}
    if not codes:
        return pl.DataFrame(schema={"column": pl.String, S.SHIPMENT_ID: pl.String})
    q = pl.DataFrame({col: [str(values[col])] for col in codes}, schema={col: pl.String for col in codes})
    hashes = q.select(pl.all().hash(seed=_SEED)).row(0)
    hs, fields, rows = _array(paths["links_h"]), _array(paths["links_field"]), _array(paths["links_row"])
    ids = _array(paths["ids"])
    columns: list[str] = []
    found: list[np.ndarray] = []
    for (col, code), h in zip(codes.items(), hashes, strict=True):
        lo = int(np.searchsorted(hs, np.uint64(h), side="left"))
        hi = int(np.searchsorted(hs, np.uint64(h), side="right"))
        at = rows[lo:hi][fields[lo:hi] == code]
        columns.extend([col] * len(at))
        found.append(ids[np.asarray(at, dtype=np.int64)])
    matched = np.concatenate(found) if found else np.array([], dtype="S1")
    return pl.DataFrame(
        {"column": columns, S.SHIPMENT_ID: [b.decode() for b in matched.tolist()]},
        schema={"column": pl.String, S.SHIPMENT_ID: pl.String},
    )


def prepare_day(layout: Layout, day: date) -> bool:
    """The nightly's call once ``day`` is published: build its look-up files so the day's first
    shipment pages read by id. A failure is logged, never raised: the list is already published
    and the workbench scans the day meanwhile (and builds the files on its first need)."""
    try:
        return build_lookup(layout, day) is not None
    except Exception:  # noqa: BLE001 - an optimisation must not fail a published night
        log.warning("could not build the look-up files of %s", day.isoformat(), exc_info=True)
        return False


def _footer(cache: OrderedDict, size: int, key: object, path: Path) -> pq.FileMetaData:
    """``path``'s parsed Parquet footer from the LRU ``cache`` (at most ``size`` entries), read on a
    miss; the lock guards the cache only, never the read."""
    with _KEYS_LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    meta = pq.read_metadata(path)
    with _KEYS_LOCK:
        cache[key] = meta
        while len(cache) > size:
            cache.popitem(last=False)
    return meta


_RAW_META: OrderedDict[tuple[str, int, int], pq.FileMetaData] = OrderedDict()
RAW_META_CACHE_SIZE = 512  # footers of raw files kept (a few tens of KB each: 60 days of parts)
_RANGES: OrderedDict[tuple[str, int, int, str], list[tuple[object, object] | None]] = OrderedDict()


_RAW_LISTING: dict[tuple[str, int, int], list[Path]] = {}


def _raw_files(layout: Layout, day: date) -> list[Path]:
    """The raw partition's files, listed again only when its folder changed (a file added,
    removed or renamed in) or changed within the last two seconds (coarse filesystem clocks):
    one stat instead of a listing for each of the 30 days of a party's history."""
    folder = _day_files(layout, day)[0]
    try:
        st = folder.stat()
    except OSError:
        return []
    key = (str(folder), st.st_mtime_ns, st.st_ino)
    with _KEYS_LOCK:
        if key in _RAW_LISTING:
            return _RAW_LISTING[key]
    files = sorted(folder.glob("*.parquet"))
    if time.time_ns() - st.st_mtime_ns > SETTLE_NS:
        with _KEYS_LOCK:
            if len(_RAW_LISTING) > RAW_META_CACHE_SIZE:
                _RAW_LISTING.clear()
            _RAW_LISTING[key] = files
    return files


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return (str(path), st.st_mtime_ns, st.st_size)


def _raw_metadata(path: Path, key: tuple[str, int, int] | None = None) -> pq.FileMetaData:
    """A raw file's footer, parsed once per file version (name, mtime, size: ``key``, else one stat)."""
    return _footer(_RAW_META, RAW_META_CACHE_SIZE, key or _file_key(path), path)


def _ranges(
    path: Path, meta: pq.FileMetaData, column: str, key: tuple[str, int, int] | None = None
) -> list[tuple[object, object] | None]:
    """Per row group of a raw file: (min, max) of ``column`` (None: no statistics), read from the
    footer once per file version (``key``, else one stat) and column."""
    k = (*(key or _file_key(path)), column)
    with _KEYS_LOCK:
        if k in _RANGES:
            return _RANGES[k]
    leaf = {meta.row_group(0).column(j).path_in_schema: j for j in range(meta.num_columns)}
    out: list[tuple[object, object] | None] = []
    for g in range(meta.num_row_groups):
        s = meta.row_group(g).column(leaf[column]).statistics
        out.append((s.min, s.max) if s is not None and s.has_min_max else None)
    with _KEYS_LOCK:
        _RANGES[k] = out
        while len(_RANGES) > RAW_META_CACHE_SIZE * 4:
            _RANGES.popitem(last=False)
    return out


def _may_hold(ranges: list[tuple[object, object] | None], value: str) -> list[bool]:
    """Per row group: whether its min/max can hold ``value``."""
    out = []
    for r in ranges:
        if r is None:
            out.append(True)
            continue
        lo, hi = r
        v: object = value.encode() if isinstance(lo, bytes) else value
        out.append(bool(lo <= v <= hi))  # type: ignore[operator]
    return out


def scan_matching(layout: Layout, days: list[date], values: dict[str, str], columns: list[str]) -> pl.DataFrame:
    """``columns`` of the raw rows of ``days`` whose column equals its value in ``values`` (any
    one), reading only the row groups whose min/max statistics can hold a value, with footers
    parsed once per file (Polars parses every footer again on each scan: 30 a page for a
    party's history over the days without look-up files)."""
    frames = []
    exact = pl.any_horizontal([pl.col(c) == v for c, v in values.items()])
    empty: pl.DataFrame | None = None
    for d in days:
        found: list[pl.DataFrame] = []
        for f in _raw_files(layout, d):
            try:
                fkey = _file_key(f)
                meta = _raw_metadata(f, fkey)
            except OSError:  # replaced since listed: Polars reads the day as it is now
                found = [scan_raw_shipments(layout, [d]).select(columns).filter(exact).collect()]
                break
            if meta.num_row_groups == 0:
                continue
            names = set(meta.schema.names)
            if any(c not in names for c in (*values, *columns)):  # an older layout: Polars fills the gaps
                found = [scan_raw_shipments(layout, [d]).select(columns).filter(exact).collect()]
                break
            if empty is None:  # the answer when nothing matches, from a footer already parsed
                table = meta.schema.to_arrow_schema().empty_table().select(list(dict.fromkeys(columns)))
                empty = pl.DataFrame(pl.from_arrow(table)).select(columns)
            keep = [False] * meta.num_row_groups
            for c, v in values.items():
                keep = [a or b for a, b in zip(keep, _may_hold(_ranges(f, meta, c, fkey), str(v)), strict=True)]
            groups = [g for g, k in enumerate(keep) if k]
            if groups:
                table = pq.ParquetFile(f, metadata=meta).read_row_groups(groups, columns=list(dict.fromkeys(columns)))
                got = pl.from_arrow(table)
                assert isinstance(got, pl.DataFrame)
                found.append(got.filter(exact))
        frames.extend(found)
    if not frames:
        if empty is not None:
            return empty
        return scan_raw_shipments(layout, days[:1]).select(columns).head(0).collect()
    return pl.concat(frames, how="vertical_relaxed")
