"""One point-in-time feature path for nightly scoring and training.

``build_features(layout, day, labels)`` sees only: the raw manifests of arrival day ``day`` (known
at run time), entity history of arrival days strictly before ``day``, partner declarations
declared up to ``day``, and exam outcomes with ``exam_date < day`` recorded before D's cut-off,
as they stood at the cut-off (pass ``LabelStore.versions()`` so a later correction leaves D with
the earlier value). Training calls it for past days and gets exactly what the nightly run saw.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.features import families as registry
from riskpipe.features import history, value
from riskpipe.features.family import DayContext, Family, FamilyDay
from riskpipe.features.keys import ENTITY_KEYS, LINK_KEYS, key_col
from riskpipe.labels import known_at
from riskpipe.store import PRIVATE_FILE, Layout, private_dir, scan_raw_shipments, set_mode, write_atomic


def feature_columns(families: list[Family]) -> list[str]:
    """The feature columns of ``families``, in registry order; a column built twice is refused."""
    cols = [c for f in families for c in f.columns]
    if len(set(cols)) != len(cols):
        twice = sorted({c for c in cols if cols.count(c) > 1})
        raise ValueError(f"feature families: columns built twice: {', '.join(twice)}")
    for f in families:
        if not set(f.day_columns) <= set(f.columns) or not set(f.categorical) <= set(f.columns):
            raise ValueError(f"feature family {f.name}: day_columns and categorical must be among its columns")
    return cols


FEATURE_COLUMNS: list[str] = feature_columns(registry.FAMILIES)
CATEGORICAL_FEATURES: list[str] = [c for f in registry.FAMILIES for c in f.categorical]
FEATURE_FAMILIES: dict[str, list[str]] = {f.name: list(f.columns) for f in registry.FAMILIES}

_KEYS = {**ENTITY_KEYS, **LINK_KEYS}

#: largest magnitude a float feature may have: an infinity becomes +/- this, NaN becomes null.
#: Far above any real feature (ingest caps a declared value at 1e9 USD and a weight at 1e-6 kg),
#: and small enough that the linear partner's scaling stays finite.
FEATURE_ABS_MAX = 1e18


def clip_nonfinite(frame: pl.DataFrame, columns: list[str] | None = None) -> pl.DataFrame:
    """``frame`` with its float ``columns`` (default: all) finite: NaN -> null, values beyond
    ``FEATURE_ABS_MAX`` (inf included) clipped to it.

    Ingest refuses non-finite and implausible values, but a store written by an older version
    may still hold them, and the model's scaler refuses an infinity ("Input X contains
    infinity"): one such row must not stop a night. One read-only check per column; only a
    column holding such a value is rewritten (none, on a clean day)."""
    cols = [c for c in (frame.columns if columns is None else columns) if frame.schema[c].is_float()]
    if not cols or frame.is_empty():
        return frame
    ok = frame.select((pl.col(c).abs() <= FEATURE_ABS_MAX).all() for c in cols).row(0)  # NaN fails the test
    bad = [c for c, fine in zip(cols, ok, strict=True) if not fine]
    if not bad:
        return frame
    return frame.with_columns(pl.col(c).fill_nan(None).clip(-FEATURE_ABS_MAX, FEATURE_ABS_MAX) for c in bad)


def family_fires(frame: pl.DataFrame) -> pl.DataFrame:
    """One boolean column per family: does this family flag the shipment (its strong flags)."""
    return frame.select(f.fires().fill_null(False).alias(f.name) for f in registry.FAMILIES)


def _known_labels(labels: pl.DataFrame | None, day: date) -> pl.DataFrame | None:
    """The outcomes D's run knew (:func:`riskpipe.labels.known_at`): recorded before D's cut-off,
    as they stood then, with exam dates before D."""
    if labels is None:
        return None
    return known_at(labels, day).select(S.SHIPMENT_ID, S.EXAM_DATE, S.OUTCOME)


#: how a day's features file is written: LZ4 without column statistics. Its readers (scoring, the
#: report's drift, the training cache) read whole columns, never filter on statistics; at 4 M rows
#: x 94 columns zstd with statistics took 12.3-14.6 s to write, LZ4 without them 4.2-5.4 s
#: (151 -> 199 MB; same frame read back)
PARQUET_OPTIONS: dict[str, Any] = {"compression": "lz4", "statistics": False}


def write_parquet_fast(frame: pl.DataFrame, path: Path) -> Path:
    """``frame`` written atomically to ``path`` with :data:`PARQUET_OPTIONS` (work files of a
    night that are read whole)."""
    return write_atomic(path, lambda tmp: frame.write_parquet(tmp, **PARQUET_OPTIONS), mode=PRIVATE_FILE)


#: a day with more rows than this is written in batches of about this many rows (contiguous ranges
#: of shipment ids), so that only the thin whole-day columns and one batch sit in memory
BATCH_ROWS = 5_000_000
_BATCH = "_batch"  # the id-range number of a row in the batched build
#: what the whole-day pass keeps per row besides the keys (value helpers for the history tables)
_THIN_VALUE = [value.HEADING, value.LOG_VPK, value.LOG_VPP]


class _Day:
    """One day's build: the registered families (read once per build) opened on the day's inputs.

    ``raw`` is the day's scan as every family reads it (after each family's ``adjust_raw``);
    ``ctx.raw`` is the scan as stored (the party keys are hashed from it)."""

    def __init__(
        self,
        layout: Layout,
        day: date,
        labels: pl.DataFrame | None,
        partner_key_path: Path | None,
        history_by_product: bool = True,
        as_of: datetime | None = None,
    ) -> None:
        # a rebuild as of a cut-off does not write the day's history tables: they are the
        # store's (latest filings), whichever night builds them first
        self.history_by_product = history_by_product and as_of is None
        self.families = list(registry.FAMILIES)
        self.columns = feature_columns(self.families)
        known = _known_labels(labels, day)
        days = history.ensure_history(layout, day)
        self.fingerprint = history.raw_fingerprint(layout, day)  # before reading: a later change is seen
        raw = scan_raw_shipments(layout, [day], as_of=as_of)
        self.ctx = DayContext(layout, day, raw, days, known, partner_key_path)
        self.work: list[tuple[Family, FamilyDay]] = [(f, f.open(self.ctx)) for f in self.families]
        for _, w in self.work:
            raw = w.adjust_raw(raw)
        self.raw = raw
        self.day_columns = [c for f in self.families for c in f.day_columns]
        self.row_columns = [c for c in self.columns if c not in set(self.day_columns)]
        #: the day columns that come from window expressions (the rest from ``day_frame``)
        self.window_columns = [e.meta.output_name() for _, w in self.work for e in w.day_exprs()]

    @property
    def output_columns(self) -> list[str]:
        return [S.SHIPMENT_ID, S.NETWORK_ID, *self.columns]

    def write_history(self, frame: pl.DataFrame) -> None:
        """By-product: the aggregates of this day for the nights after it (saves re-reading raw);
        ``frame`` carries the ``_key_*`` columns and the value helpers."""
        layout, day = self.ctx.layout, self.ctx.day
        if self.history_by_product and frame.height and not history.history_current(layout, day, self.fingerprint):
            history.write_day_history(layout, day, frame, self.fingerprint)


def _day_frame(b: _Day) -> pl.DataFrame:
    """The columns that need the whole day, sorted by shipment id: ``shipment_id``,
    ``network_id`` and the families' day columns.

    Built from a thin frame (ids, hashed party keys, value in USD and the heading helpers):
    windows over person, address and contact keys, history lookups and the day's networks never
    see the names, addresses and descriptions. Writes the day's history tables on the way."""
    thin = b.ctx.raw.select(
        S.SHIPMENT_ID,
        S.DECLARED_VALUE_USD,
        *(expr.alias(key_col(n)) for n, expr in _KEYS.items()),
        value.heading_expr(),
        *value.log_value_exprs(),
    ).collect(engine="streaming")
    thin = sorted_by_id(thin)
    b.write_history(thin)
    # one family's windows at a time: their group tables never coexist
    windows = [thin.select(exprs) for _, w in b.work if (exprs := w.day_exprs())]
    thin = thin.drop(S.DECLARED_VALUE_USD, *_THIN_VALUE).hstack([c for w in windows for c in w.get_columns()])
    del windows
    for _, w in b.work:
        thin = w.day_frame(thin)
    return thin.select(S.SHIPMENT_ID, S.NETWORK_ID, *b.day_columns)


#: ids of at most this many bytes, all of one length, are sorted as two big-endian 64-bit words
_WORD_SORT_BYTES = 16


def id_order(ids: pl.Series) -> pl.Series:
    """The permutation that sorts ``ids`` (strings) ascending, as ``ids.arg_sort()`` gives it for
    unique ids. Ids of one byte length of at most 16 bytes (the store's: 16) are sorted as two
    big-endian 64-bit words (zero-padded), whose order is the bytes' order: a NumPy lexsort of
    two integer arrays took 0.18 CPU-s at 1 M ids against 0.9 s for the string sort (the
    features step's largest single sort); other ids fall back to the string sort."""
    import numpy as np

    n = ids.len()
    lengths = ids.str.len_bytes()
    width = lengths.max() if n else None
    if not n or ids.null_count() or not isinstance(width, int) or width > _WORD_SORT_BYTES or lengths.min() != width:
        return ids.arg_sort()
    raw = ids.str.pad_end(_WORD_SORT_BYTES, "\x00").cast(pl.Binary).to_frame("b")
    words = raw.select(
        pl.col("b").bin.slice(k, 8).bin.reinterpret(dtype=pl.UInt64, endianness="big").alias(f"w{k}") for k in (0, 8)
    )
    order = np.lexsort((words.get_column("w8").to_numpy(), words.get_column("w0").to_numpy()))
    return pl.Series(ids.name, order, dtype=pl.get_index_type())


def sorted_by_id(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by shipment id, one column at a time; empties ``frame``: each column is
    gathered in order as it is dropped from it (a whole-frame sort of the 16 M-row thin frame
    held about three copies of it)."""
    order = id_order(frame.get_column(S.SHIPMENT_ID))
    cols = [frame.drop_in_place(c).gather(order) for c in frame.columns]
    # flagged sorted (ids are unique): a later sort by id of the frame is then a no-op, not a copy
    cols = [c.set_sorted() if c.name == S.SHIPMENT_ID else c for c in cols]
    return pl.DataFrame(cols)


def _row_plan(b: _Day) -> pl.LazyFrame:
    """The families' row-level columns (streamable: no window over the day), in any row order."""
    lazy = b.raw
    for _, w in b.work:
        lazy = w.rows(lazy)
    return lazy.select(S.SHIPMENT_ID, *b.row_columns)


def _assemble(b: _Day, rows: pl.DataFrame, day_part: pl.DataFrame) -> pl.DataFrame:
    """Row columns (any order; ``rows`` is emptied) beside the whole-day columns of the same
    shipments (sorted by id)."""
    rows = sorted_by_id(rows)
    if not rows.get_column(S.SHIPMENT_ID).equals(day_part.get_column(S.SHIPMENT_ID)):
        raise RuntimeError("feature build: row batch and whole-day columns hold different shipments")
    return clip_nonfinite(rows.hstack(day_part.drop(S.SHIPMENT_ID).get_columns()).select(b.output_columns))


def _build(
    layout: Layout,
    day: date,
    labels: pl.DataFrame | None,
    timings: dict[str, float] | None,
    partner_key_path: Path | None = None,
    history_by_product: bool = True,
    as_of: datetime | None = None,
) -> pl.DataFrame:
    """The feature path in one batch: one lazy plan over the whole day (each family's rows, then
    its windows), then the families' whole-day work on the collected frame; with ``timings`` each
    family is collected on its own and timed (its row and whole-day parts summed). Faster than the
    thin/row split of :func:`write_features`' batches at 4 M rows (nightly bench, features stage:
    50.9 / 44.4 s split vs median 34.5 s here); the split serves days above ``BATCH_ROWS`` where
    this plan's memory (3 GB at 4 M rows, 12 GB at 16 M) does not fit."""
    clock = time.perf_counter
    t0 = clock()
    b = _Day(layout, day, labels, partner_key_path, history_by_product, as_of)
    lazy = b.raw
    if timings is not None:
        lazy = lazy.collect().lazy()
        timings["history_update_and_read_raw"] = clock() - t0

    def timed(name: str, t: float, frame: pl.LazyFrame) -> pl.LazyFrame:
        if timings is None:
            return frame
        frame = frame.collect().lazy()
        timings[name] = timings.get(name, 0.0) + clock() - t
        return frame

    lazy = timed("keys", clock(), lazy.with_columns(expr.alias(key_col(n)) for n, expr in _KEYS.items()))
    for f, w in b.work:
        t = clock()
        lazy = w.rows(lazy)
        if exprs := w.day_exprs():
            lazy = lazy.with_columns(exprs)
        lazy = timed(f.name, t, lazy)
    # the value helpers serve only the day's history tables: not collected (nor sorted) when the
    # build does not write them (the night: history_step writes them after publishing)
    helpers = _THIN_VALUE if b.history_by_product else []
    keep = [S.SHIPMENT_ID, *b.row_columns, *b.window_columns, *(key_col(k) for k in _KEYS), *helpers]
    t = clock()
    # sorted one column at a time: a whole-frame sort held the collected frame twice (4 M rows:
    # the step's peak, 3.3 GB)
    frame = sorted_by_id(lazy.select(keep).collect())
    if timings is not None:
        timings["collect"] = clock() - t
    t = clock()
    b.write_history(frame)
    if timings is not None:
        timings["history_write_day"] = clock() - t
    for f, w in b.work:
        t = clock()
        frame = w.day_frame(frame)
        if timings is not None:
            timings[f.name] = timings.get(f.name, 0.0) + clock() - t
    return clip_nonfinite(frame.select(b.output_columns).sort(S.SHIPMENT_ID))


def build_features_staged(
    layout: Layout, day: date, labels: pl.DataFrame | None, timings: dict[str, float]
) -> pl.DataFrame:
    """:func:`build_features` with each family collected on its own and timed into ``timings``
    (seconds per stage and family; the total is not the production time: the benchmark's view)."""
    return _build(layout, day, labels, timings)


def build_features(
    layout: Layout,
    day: date,
    labels: pl.DataFrame | None = None,
    *,
    partner_key_path: Path | None = None,
    history_by_product: bool = True,
    as_of: datetime | None = None,
) -> pl.DataFrame:
    """Features of every shipment arriving on ``day``: ``shipment_id``, ``network_id``, then
    ``FEATURE_COLUMNS`` in order, sorted by shipment id. ``labels``: exam outcomes, best all their
    recorded versions (only those with ``exam_date < day`` recorded before D's cut-off are used).
    ``partner_key_path``: the shared key of partner feeds (``settings.partner_key_path`` as the
    caller loaded it, environment included); needed only when a feed or OEA list is active for the
    day (default: the home's riskpipe.toml). ``history_by_product``: also write the day's history
    tables (for the nights after it) from the frame built; the night passes False and writes them
    after publishing (:func:`riskpipe.nightly.history_step`), off its critical path. ``as_of``:
    each shipment as filed before it (a rebuild of a past day passes D's cut-off,
    :func:`riskpipe.store.scan_raw_shipments`); default the latest filing (the current night)."""
    return _build(layout, day, labels, None, partner_key_path, history_by_product, as_of)


def write_features(
    layout: Layout,
    day: date,
    labels: pl.DataFrame | None,
    path: Path,
    batch_rows: int | None = None,
    *,
    partner_key_path: Path | None = None,
    history_by_product: bool = True,
) -> Path:
    """``build_features(layout, day, labels)`` written to ``path`` (atomically).

    A day of more than ``batch_rows`` rows (default ``BATCH_ROWS``) is built in batches: the
    whole-day columns once (thin), the row families in one streaming pass split into contiguous
    ranges of shipment ids, then each range sorted, joined to its whole-day columns and written
    as a part; the parts are streamed into ``path``. Same file as the one-batch path (tested)."""
    batch_rows = BATCH_ROWS if batch_rows is None else batch_rows
    if batch_rows < 1:
        raise ValueError(f"batch_rows: need at least 1, got {batch_rows}")
    n_rows = scan_raw_shipments(layout, [day]).select(pl.len()).collect().item()
    private_dir(path.parent, under=layout.home)  # hashed party keys: owner only (file 0600)
    if n_rows <= batch_rows:
        frame = build_features(
            layout, day, labels, partner_key_path=partner_key_path, history_by_product=history_by_product
        )
        return write_parquet_fast(frame, path)
    b = _Day(layout, day, labels, partner_key_path, history_by_product)
    work = path.with_name(f".{path.name}.batches-{uuid.uuid4().hex[:8]}")
    try:
        private_dir(work)
        # the whole-day columns go to disk while the row families stream: never both in memory
        day_file = work / "day.parquet"
        day_frame = _day_frame(b)
        n = -(-day_frame.height // batch_rows)
        starts = [i * day_frame.height // n for i in range(n)] + [day_frame.height]
        bounds = [day_frame.get_column(S.SHIPMENT_ID)[s] for s in starts[1:-1]]
        day_frame.write_parquet(day_file)
        del day_frame
        batch = pl.sum_horizontal([(pl.col(S.SHIPMENT_ID) >= x).cast(pl.Int32) for x in bounds]).alias(_BATCH)
        split = work / "rows"
        target = pl.PartitionBy(split, key=_BATCH, include_key=False, approximate_bytes_per_file=None)
        _row_plan(b).with_columns(batch).sink_parquet(target, mkdir=True, engine="streaming")
        parts = []
        for i in range(n):
            files = sorted((split / f"{_BATCH}={i}").glob("*.parquet"))
            rows = pl.read_parquet(files) if files else pl.DataFrame(schema=_row_plan(b).collect_schema())
            day_part = pl.scan_parquet(day_file).slice(starts[i], starts[i + 1] - starts[i]).collect()
            part = work / f"part-{i:04d}.parquet"
            _assemble(b, rows, day_part).write_parquet(part)
            parts.append(part)
            del rows, day_part
        # streamed into the work folder, then renamed into place (store's atomic writers take a
        # frame in memory; the whole day's frame is what the batches avoid holding)
        whole = work / "features.parquet"
        pl.scan_parquet(parts).sink_parquet(whole, engine="streaming", **PARQUET_OPTIONS)
        set_mode(whole, PRIVATE_FILE)
        os.replace(whole, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path
