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
from datetime import date
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.features import commodity, crossborder, history, network, parties, value
from riskpipe.features import partner as partner_family
from riskpipe.features.keys import ENTITY_KEYS, LINK_KEYS, key_col, with_keys
from riskpipe.store import Layout, scan_raw_shipments, tmp_sibling, write_parquet_atomic

FEATURE_COLUMNS: list[str] = (
    commodity.COLUMNS
    + value.COLUMNS
    + parties.COLUMNS
    + history.COLUMNS
    + network.COLUMNS
    + crossborder.COLUMNS
    + partner_family.COLUMNS
)
CATEGORICAL_FEATURES: list[str] = [
    commodity.HTS_CHAPTER,
    parties.TRUSTED_TRADER,
    crossborder.MODE,
    crossborder.ENTRY_TYPE,
    crossborder.ORIGIN_GROUP,
]
FEATURE_FAMILIES: dict[str, list[str]] = {
    "commodity": list(commodity.COLUMNS),
    "value": list(value.COLUMNS),
    "parties": list(parties.COLUMNS),
    "history": list(history.COLUMNS),
    "network": list(network.COLUMNS),
    "crossborder": list(crossborder.COLUMNS),
    "partner": list(partner_family.COLUMNS),
}
_FIRES = {
    "commodity": commodity.fires,
    "value": value.fires,
    "parties": parties.fires,
    "history": history.fires,
    "network": network.fires,
    "crossborder": crossborder.fires,
    "partner": partner_family.fires,
}

OUTPUT_COLUMNS = [S.SHIPMENT_ID, S.NETWORK_ID, *FEATURE_COLUMNS]
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
    return frame.select(fire().fill_null(False).alias(name) for name, fire in _FIRES.items())


def _known_labels(labels: pl.DataFrame | None, day: date) -> pl.DataFrame | None:
    """The outcomes D's run knew (:func:`riskpipe.labels.known_at`): recorded before D's cut-off,
    as they stood then, with exam dates before D."""
    if labels is None:
        return None
    from riskpipe.labels import known_at

    return known_at(labels, day).select(S.SHIPMENT_ID, S.EXAM_DATE, S.OUTCOME)


#: a day with more rows than this is written in batches of about this many rows (contiguous ranges
#: of shipment ids), so that only the thin whole-day columns and one batch sit in memory
BATCH_ROWS = 5_000_000
_BATCH = "_batch"  # the id-range number of a row in the batched build
#: what the whole-day pass keeps per row besides the keys (value helpers for the history tables)
_THIN_VALUE = [value.HEADING, value.LOG_VPK, value.LOG_VPP]
#: columns of the whole-day pass in the output
DAY_COLUMNS = [*value.DAY_COLUMNS, *parties.DAY_COLUMNS, *history.COLUMNS, *network.COLUMNS]
#: columns computed row by row
ROW_COLUMNS = [
    *commodity.COLUMNS,
    *value.ROW_COLUMNS,
    *parties.ROW_COLUMNS,
    *crossborder.COLUMNS,
    *partner_family.COLUMNS,
]
assert sorted(DAY_COLUMNS + ROW_COLUMNS) == sorted(FEATURE_COLUMNS), "every feature is built exactly once"


class _Inputs:
    """What the feature path reads besides the day's rows (all known at run time)."""

    def __init__(
        self, layout: Layout, day: date, labels: pl.DataFrame | None, partner_key_path: Path | None = None
    ) -> None:
        self.known = _known_labels(labels, day)
        self.days = history.ensure_history(layout, day)
        self.norms = history.heading_norms(layout, day, self.days).collect()
        self.partner = crossborder.partner_for_day(layout, day).collect()
        self.fingerprint = history.raw_fingerprint(layout, day)  # before reading: a later change is seen
        self.raw = scan_raw_shipments(layout, [day])
        self.watch = partner_family.inputs(layout, day, self.raw, key_path=partner_key_path)


def _day_frame(layout: Layout, day: date, inp: _Inputs) -> pl.DataFrame:
    """The columns that need the whole day, sorted by shipment id: ``shipment_id``,
    ``network_id`` and ``DAY_COLUMNS``.

    Built from a thin frame (ids, hashed party keys, value in USD and the heading helpers):
    windows over person, address and contact keys, history lookups and the day's networks never
    see the names, addresses and descriptions. Writes the day's history tables on the way."""
    thin = inp.raw.select(
        S.SHIPMENT_ID,
        S.DECLARED_VALUE_USD,
        *(expr.alias(key_col(n)) for n, expr in _KEYS.items()),
        value.heading_expr(),
        *value.log_value_exprs(),
    ).collect(engine="streaming")
    thin = sorted_by_id(thin)
    if thin.height and not history.history_current(layout, day, inp.fingerprint):
        # by-product: the aggregates of this day for the nights after it (saves re-reading raw)
        history.write_day_history(layout, day, thin, inp.fingerprint)
    # one family's windows at a time: their group tables never coexist
    windows = [thin.select(value.day_exprs()), thin.select(parties.day_exprs())]
    thin = thin.drop(S.DECLARED_VALUE_USD, *_THIN_VALUE).hstack([c for w in windows for c in w.get_columns()])
    del windows
    thin = history.add_history(thin, layout, day, inp.days, inp.known)
    thin = network.add_network(thin)
    return thin.select(S.SHIPMENT_ID, S.NETWORK_ID, *DAY_COLUMNS)


def sorted_by_id(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` sorted by shipment id, one column at a time; empties ``frame``: each column is
    gathered in order as it is dropped from it (a whole-frame sort of the 16 M-row thin frame
    held about three copies of it)."""
    order = frame.get_column(S.SHIPMENT_ID).arg_sort()
    return pl.DataFrame([frame.drop_in_place(c).gather(order) for c in frame.columns])


def _row_plan(raw: pl.LazyFrame, inp: _Inputs, day: date) -> pl.LazyFrame:
    """The families computed row by row (streamable: no window over the day), in any row order."""
    # an unconfirmed mx_oea claim is cleared before the parties family reads it
    lazy = commodity.add_commodity(commodity.prepare(partner_family.verify_oea(raw, inp.watch)))
    lazy = value.prepare_rows(lazy, inp.norms.lazy()).with_columns(value.row_exprs())
    lazy = lazy.with_columns(parties.row_exprs(day))
    lazy = crossborder.add_crossborder(lazy, inp.partner.lazy())
    lazy = partner_family.add_partner(lazy, inp.watch, day)
    return lazy.select(S.SHIPMENT_ID, *ROW_COLUMNS)


def _assemble(rows: pl.DataFrame, day_part: pl.DataFrame) -> pl.DataFrame:
    """Row columns (any order; ``rows`` is emptied) beside the whole-day columns of the same
    shipments (sorted by id)."""
    rows = sorted_by_id(rows)
    if not rows.get_column(S.SHIPMENT_ID).equals(day_part.get_column(S.SHIPMENT_ID)):
        raise RuntimeError("feature build: row batch and whole-day columns hold different shipments")
    return clip_nonfinite(rows.hstack(day_part.drop(S.SHIPMENT_ID).get_columns()).select(OUTPUT_COLUMNS))


def _build(
    layout: Layout,
    day: date,
    labels: pl.DataFrame | None,
    timings: dict[str, float] | None,
    partner_key_path: Path | None = None,
) -> pl.DataFrame:
    """The feature path in one batch: one lazy plan over the whole day (windows, joins), then
    history and networks on the collected frame; with ``timings`` each family is collected on its
    own and timed. Faster than the thin/row split of :func:`write_features`' batches at 4 M rows
    (nightly bench, features stage: 50.9 / 44.4 s split vs median 34.5 s here); the split serves days above
    ``BATCH_ROWS`` where this plan's memory (3 GB at 4 M rows, 12 GB at 16 M) does not fit."""
    clock = time.perf_counter
    known = _known_labels(labels, day)

    t0 = clock()
    days = history.ensure_history(layout, day)
    norms = history.heading_norms(layout, day, days)
    partner = crossborder.partner_for_day(layout, day)
    fingerprint = history.raw_fingerprint(layout, day)  # before reading: a later change is seen
    raw = scan_raw_shipments(layout, [day])
    watch = partner_family.inputs(layout, day, raw, key_path=partner_key_path)
    # an unconfirmed mx_oea claim is cleared before the parties family reads it
    raw = partner_family.verify_oea(raw, watch)
    if timings is not None:
        norms = norms.collect().lazy()
        partner = partner.collect().lazy()
        raw = raw.collect().lazy()
        timings["history_update_and_read_raw"] = clock() - t0

    stages = [
        ("keys", lambda f: with_keys(f, _KEYS)),
        ("commodity", lambda f: commodity.add_commodity(commodity.prepare(f))),
        ("value", lambda f: value.add_value(f, norms)),
        ("parties", lambda f: parties.add_parties(f, day)),
        ("crossborder", lambda f: crossborder.add_crossborder(f, partner)),
        ("partner", lambda f: partner_family.add_partner(f, watch, day)),
    ]
    lazy = raw
    for name, stage in stages:
        t = clock()
        lazy = stage(lazy)
        if timings is not None:
            lazy = lazy.collect().lazy()
            timings[name] = clock() - t
    keep = [
        S.SHIPMENT_ID,
        *commodity.COLUMNS,
        *value.COLUMNS,
        *parties.COLUMNS,
        *crossborder.COLUMNS,
        *partner_family.COLUMNS,
        *(f"_key_{k}" for k in _KEYS),
        value.HEADING,
        value.LOG_VPK,
        value.LOG_VPP,
    ]
    t = clock()
    frame = lazy.select(keep).collect().sort(S.SHIPMENT_ID)
    if timings is not None:
        timings["collect"] = clock() - t
    if frame.height and not history.history_current(layout, day, fingerprint):
        # by-product: the aggregates of this day for the nights after it (saves re-reading raw)
        t = clock()
        history.write_day_history(layout, day, frame, fingerprint)
        if timings is not None:
            timings["history_write_day"] = clock() - t

    t = clock()
    frame = history.add_history(frame, layout, day, days, known)
    if timings is not None:
        timings["history"] = clock() - t
    t = clock()
    frame = network.add_network(frame.sort(S.SHIPMENT_ID))
    if timings is not None:
        timings["network"] = clock() - t
    return clip_nonfinite(frame.select(OUTPUT_COLUMNS).sort(S.SHIPMENT_ID))


def build_features(
    layout: Layout, day: date, labels: pl.DataFrame | None = None, *, partner_key_path: Path | None = None
) -> pl.DataFrame:
    """Features of every shipment arriving on ``day``: ``shipment_id``, ``network_id``, then
    ``FEATURE_COLUMNS`` in order, sorted by shipment id. ``labels``: exam outcomes, best all their
    recorded versions (only those with ``exam_date < day`` recorded before D's cut-off are used).
    ``partner_key_path``: the shared key of partner feeds (``settings.partner_key_path`` as the
    caller loaded it, environment included); needed only when a feed or OEA list is active for the
    day (default: the home's riskpipe.toml)."""
    return _build(layout, day, labels, None, partner_key_path)


def write_features(
    layout: Layout,
    day: date,
    labels: pl.DataFrame | None,
    path: Path,
    batch_rows: int | None = None,
    *,
    partner_key_path: Path | None = None,
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
    if n_rows <= batch_rows:
        return write_parquet_atomic(build_features(layout, day, labels, partner_key_path=partner_key_path), path)
    inp = _Inputs(layout, day, labels, partner_key_path)
    work = path.with_name(f".{path.name}.batches-{uuid.uuid4().hex[:8]}")
    try:
        work.mkdir(parents=True)
        # the whole-day columns go to disk while the row families stream: never both in memory
        day_file = work / "day.parquet"
        day_frame = _day_frame(layout, day, inp)
        n = -(-day_frame.height // batch_rows)
        starts = [i * day_frame.height // n for i in range(n)] + [day_frame.height]
        bounds = [day_frame.get_column(S.SHIPMENT_ID)[s] for s in starts[1:-1]]
        day_frame.write_parquet(day_file)
        del day_frame
        batch = pl.sum_horizontal([(pl.col(S.SHIPMENT_ID) >= b).cast(pl.Int32) for b in bounds]).alias(_BATCH)
        split = work / "rows"
        target = pl.PartitionBy(split, key=_BATCH, include_key=False, approximate_bytes_per_file=None)
        _row_plan(inp.raw, inp, day).with_columns(batch).sink_parquet(target, mkdir=True, engine="streaming")
        parts = []
        for i in range(n):
            files = sorted((split / f"{_BATCH}={i}").glob("*.parquet"))
            rows = pl.read_parquet(files) if files else pl.DataFrame(schema=_row_schema(inp, day))
            day_part = pl.scan_parquet(day_file).slice(starts[i], starts[i + 1] - starts[i]).collect()
            part = work / f"part-{i:04d}.parquet"
            _assemble(rows, day_part).write_parquet(part)
            parts.append(part)
            del rows, day_part
        tmp = tmp_sibling(path)
        try:
            pl.scan_parquet(parts).sink_parquet(tmp, engine="streaming")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _row_schema(inp: _Inputs, day: date) -> pl.Schema:
    return _row_plan(inp.raw, inp, day).collect_schema()
