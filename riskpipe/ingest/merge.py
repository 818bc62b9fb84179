"""Amendment merge: for a ``shipment_id`` the latest ``filed_at`` wins, also across files and runs;
only the partitions touched are staged (for the run's journal).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.ingest.columns import _ORD, _ROW, _SEQ
from riskpipe.ingest.normalise import RAW_PARQUET, _ordered_columns, _parquet_rows
from riskpipe.ingest.readers import _scan_text
from riskpipe.ingest.validation import _text
from riskpipe.store import (
    PRIVATE_DIR,
    PRIVATE_FILE,
    Layout,
    private_dir,
    set_mode,
    staging_dir,
    write_parquet_atomic,
)


def _contested_ids(layout: Layout, paths: list[Path], workdir: Path) -> pl.Series:
    """Ids that may be filed more than once: seen twice among the rows of ``paths`` (valid or
    not) or already in the raw store. Reads only the id column (0.01 s for a 380 k-row Parquet
    file, 0.3 s for CSV, 1.2 s for NDJSON). Staging puts their rows apart, so the other rows of
    a day's files can become partition parts without being rewritten. Only an optimisation:
    the merge finds the superseded rows on its own; a file that cannot be read here is left
    to staging to reject."""
    ids = []
    for path in paths:
        if path.name.lower().endswith(".gz"):
            continue  # decompressing twice costs more than the rewrite it might save
        try:
            # staging checks the bytes (bad ones raise here) and reads every key
            lf, _fmt = _scan_text(path, workdir, check_utf8=False, all_keys=False)
            schema = lf.collect_schema()
            if S.SHIPMENT_ID in schema:
                ids.append(
                    lf.select(_text(S.SHIPMENT_ID, schema[S.SHIPMENT_ID]).alias(S.SHIPMENT_ID))
                    .collect(engine="streaming")
                    .get_column(S.SHIPMENT_ID)
                    .drop_nulls()
                )
        except Exception:  # staging rejects the file with its reason
            continue
    if not ids:
        return pl.Series(S.SHIPMENT_ID, [], dtype=pl.String)
    sorted_ids = pl.concat(ids).sort()
    dups = sorted_ids.filter(sorted_ids == sorted_ids.shift(1))
    in_store = _ids_in_store(layout, sorted_ids)
    return pl.concat([dups, in_store]).unique()


def _ids_in_store(layout: Layout, sorted_ids: pl.Series) -> pl.Series:
    """The ids of ``sorted_ids`` already in the raw store (partitions ruled out by their
    row-group statistics are not read)."""
    files = [
        f
        for _d, f in _existing_files(layout.raw_shipments, "arrival_date")
        if _ranges_hold_any(_id_ranges(f), sorted_ids)
    ]
    if not files or sorted_ids.is_empty():
        return sorted_ids.clear()
    wanted = pl.DataFrame({S.SHIPMENT_ID: sorted_ids}).unique().lazy()
    return (
        pl.concat([pl.scan_parquet(f).select(S.SHIPMENT_ID) for f in files])
        .join(wanted, on=S.SHIPMENT_ID, how="semi")
        .collect(engine="streaming")
        .get_column(S.SHIPMENT_ID)
    )


def _existing_files(base: Path, prefix: str) -> list[tuple[date, Path]]:
    if not base.exists():
        return []
    out: list[tuple[date, Path]] = []
    for part in sorted(p for p in base.glob(f"{prefix}=*") if p.is_dir()):
        day = date.fromisoformat(part.name.split("=", 1)[1])
        out.extend((day, f) for f in sorted(part.glob("*.parquet")))
    return out


def _keyed(files: list[Path], seq: int) -> list[pl.LazyFrame]:
    """Scans with the candidate key (_seq, _ord, _row_number) that identifies a row uniquely
    (staged files keep input order, so a later row has a larger _row_number)."""
    return [
        pl.scan_parquet(f, row_index_name=_ROW, row_index_offset=1).with_columns(
            pl.col(_ROW).cast(pl.Int64), pl.lit(seq, dtype=pl.Int8).alias(_SEQ), pl.lit(i, dtype=pl.Int32).alias(_ORD)
        )
        for i, f in enumerate(files)
    ]


def _merge_shipments(
    layout: Layout, new_files: list[Path], swaps: list[tuple[Path | None, Path]]
) -> tuple[int, int, list[str]]:
    """Apply amendments and stage the touched arrival-date partitions.

    Only the candidates sharing a ``shipment_id`` are sorted; files holding no loser (superseded
    version) become parts of their partition as they are, the others are filtered (by row
    number) into one rewritten part that streams to disk. Nothing visible changes here: each
    staged partition is added to ``swaps`` (as it is staged, so a failure can drop it) for the
    run's journal. Returns (new rows now in the store, existing rows replaced, days written)."""
    key = [S.SHIPMENT_ID, _SEQ, _ORD, _ROW]
    order = [S.FILED_AT, _SEQ, _ORD, _ROW]
    thin_cols = [S.SHIPMENT_ID, S.FILED_AT, S.ARRIVAL_DATE, S.INGESTED_AT, _SEQ, _ORD, _ROW]
    new_scans = _keyed(new_files, 1)
    new_thin = pl.concat([_thin(s, thin_cols) for s in new_scans]).collect(engine="streaming")

    existing = _existing_files(layout.raw_shipments, "arrival_date")
    exist_scans = _keyed([f for _, f in existing], 0)
    # one sort of the new ids (0.5 s for 4 M) finds the ids filed twice (neighbours) and serves
    # the row-group check below; a hash-based is_duplicated over the rows cost 0.95 s
    sorted_ids = new_thin.get_column(S.SHIPMENT_ID).drop_nulls().sort()
    dup_ids = sorted_ids.filter(sorted_ids == sorted_ids.shift(1)).unique()
    old_thin = new_thin.clear()
    if exist_scans:
        # the store holds months of rows: skip the files whose row-group statistics prove that
        # none of their ids is among the new ones (exact; saves decoding ~4M ids per day kept)
        maybe = [
            s for (_d, f), s in zip(existing, exist_scans, strict=True) if _ranges_hold_any(_id_ranges(f), sorted_ids)
        ]
        if maybe:
            new_ids = pl.DataFrame({S.SHIPMENT_ID: sorted_ids}).unique()
            old_thin = (
                pl.concat([_thin(s, thin_cols) for s in maybe])
                .join(new_ids.lazy(), on=S.SHIPMENT_ID, how="semi")
                .collect(engine="streaming")
            )
    # a partition holds one row per id, so every old row found is contested by a new one
    contested_ids = pl.concat([dup_ids, old_thin.get_column(S.SHIPMENT_ID)]).unique()
    if contested_ids.is_empty():
        contested = new_thin.clear()
    else:
        contested = pl.concat([old_thin, new_thin.filter(pl.col(S.SHIPMENT_ID).is_in(contested_ids.implode()))])
    ranked = contested.sort([S.SHIPMENT_ID, *order])
    # a loser is kept (raw/shipments_superseded) with the filing and ingest times of the filing
    # that replaced it (the next one in filing order): the end of its validity, for point in time
    superseded = ranked.with_columns(
        pl.col(S.FILED_AT).shift(-1).over(S.SHIPMENT_ID).alias(S.SUPERSEDED_BY_FILED_AT),
        pl.col(S.INGESTED_AT).shift(-1).over(S.SHIPMENT_ID).alias(S.SUPERSEDED_BY_INGESTED_AT),
    ).filter(~pl.col(S.SHIPMENT_ID).is_last_distinct())
    losers = superseded.select(key)
    lost_new = int((losers[_SEQ] == 1).sum())
    ingested = new_thin.height - lost_new
    replaced = int((losers[_SEQ] == 0).sum())

    days = sorted(set(new_thin[S.ARRIVAL_DATE].unique().to_list()) | set(old_thin[S.ARRIVAL_DATE].unique().to_list()))
    files_by_day: dict[date, list[int]] = {}
    for idx, (d, _f) in enumerate(existing):
        files_by_day.setdefault(d, []).append(idx)
    new_days = {
        d: set(g[_ORD].unique().to_list())
        for (d,), g in new_thin.select(S.ARRIVAL_DATE, _ORD).unique().partition_by(S.ARRIVAL_DATE, as_dict=True).items()
    }

    file_days: dict[int, set[date]] = {}
    for d, ords in new_days.items():
        for o in ords:
            file_days.setdefault(o, set()).add(d)
    # superseded rows by file: (_seq, _ord) -> their row numbers, dropped with a per-file
    # filter (an anti-join on the key held the whole day in memory: 3.2 GB for 4M rows)
    lost_rows: dict[tuple[int, int], pl.Series] = (
        {
            (int(sq), int(o)): g.get_column(_ROW)
            for (sq, o), g in losers.partition_by([_SEQ, _ORD], as_dict=True).items()
        }
        if losers.height
        else {}
    )

    token = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")  # part names sort in ingest order
    private_dir(layout.raw_shipments, under=layout.home)
    _stage_superseded(layout, superseded, exist_scans, new_scans, token, swaps)
    written = []
    for day in days:
        sources = sorted(new_days.get(day, set()))
        existing_here = files_by_day.get(day, [])
        # parts: existing files without superseded rows stay (hard-linked), staged files holding
        # only this day and no superseded row move in; the rest is rewritten into one new part
        keep = [existing[i][1] for i in existing_here if (0, i) not in lost_rows]
        movable = [o for o in sources if file_days[o] == {day} and (1, o) not in lost_rows]
        rewrite = [_drop(exist_scans[i], lost_rows.get((0, i))) for i in existing_here if (0, i) in lost_rows]
        rewrite += [
            _drop(new_scans[o].filter(pl.col(S.ARRIVAL_DATE) == day), lost_rows.get((1, o)))
            for o in sources
            if o not in movable
        ]
        rewrite_plan = _concat_ordered(rewrite) if rewrite else None
        schemas = [pl.read_parquet_schema(f) for f in [*keep, *(new_files[o] for o in movable)]]
        if rewrite_plan is not None:
            schemas.append(dict(rewrite_plan.collect_schema()))
        if all(list(sch.items()) == list(schemas[0].items()) for sch in schemas):
            _write_parts(
                layout.raw_shipments_day(day), keep, [new_files[o] for o in movable], rewrite_plan, token, swaps
            )
        else:  # column sets differ (extra input columns): one part of every row of the day
            parts = [_drop(exist_scans[i], lost_rows.get((0, i))) for i in existing_here]
            parts += [_drop(new_scans[o].filter(pl.col(S.ARRIVAL_DATE) == day), lost_rows.get((1, o))) for o in sources]
            _write_parts(layout.raw_shipments_day(day), [], [], _concat_ordered(parts), token, swaps)
        written.append(day.isoformat())
    return ingested, replaced, written


def _thin(scan: pl.LazyFrame, cols: list[str]) -> pl.LazyFrame:
    """``cols`` of ``scan`` (``ingested_at`` null in a part written before ingest stamped it)."""
    have = scan.collect_schema()
    return scan.select(pl.col(c) if c in have else pl.lit(None, dtype=S.RAW_SHIPMENT_SCHEMA[c]).alias(c) for c in cols)


def _stage_superseded(
    layout: Layout,
    superseded: pl.DataFrame,
    exist_scans: list[pl.LazyFrame],
    new_scans: list[pl.LazyFrame],
    token: str,
    swaps: list[tuple[Path | None, Path]],
) -> None:
    """Stage the superseded filings (nothing lost: an amendment keeps what it replaced) into
    ``raw/shipments_superseded/arrival_date=D`` of the arrival day each of them gave: the
    partition's parts hard-linked plus one new part, the swap added to ``swaps`` for the run's
    journal. Reads only the superseded rows (by row number) of the files holding them."""
    if superseded.height == 0:
        return
    private_dir(layout.raw_superseded, under=layout.home)
    info_cols = [_ROW, S.SUPERSEDED_BY_FILED_AT, S.SUPERSEDED_BY_INGESTED_AT]
    for (day,), rows in sorted(superseded.partition_by(S.ARRIVAL_DATE, as_dict=True).items()):
        plans = [
            (exist_scans if sq == 0 else new_scans)[o].join(g.select(info_cols).lazy(), on=_ROW, how="inner")
            for (sq, o), g in sorted(rows.partition_by([_SEQ, _ORD], as_dict=True).items())
        ]
        names: set[str] = set()
        for p in plans:
            names.update(p.collect_schema().names())
        plan = (pl.concat(plans, how="diagonal_relaxed") if len(plans) > 1 else plans[0]).select(
            _ordered_columns(names, [*S.RAW_SHIPMENT_SCHEMA, *S.SUPERSEDED_DERIVED])
        )
        final = layout.raw_superseded_day(day)
        staged = staging_dir(final, PRIVATE_DIR)
        swaps.append((staged, final))
        for f in sorted(final.glob("*.parquet")) if final.exists() else []:
            os.link(f, staged / f.name)
            set_mode(staged / f.name, PRIVATE_FILE)
        out = staged / f"part-{token}-sup.parquet"
        plan.sink_parquet(out, **RAW_PARQUET, engine="streaming")
        set_mode(out, PRIVATE_FILE)


def _concat_ordered(parts: list[pl.LazyFrame]) -> pl.LazyFrame:
    """``parts`` stacked (missing extra columns as nulls) with the raw column order."""
    names: set[str] = set()
    for p in parts:
        names.update(p.collect_schema().names())
    plan = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
    return plan.select(_ordered_columns(names, S.RAW_SHIPMENT_SCHEMA))


def _write_parts(
    final: Path,
    keep: list[Path],
    move: list[Path],
    rewrite: pl.LazyFrame | None,
    token: str,
    swaps: list[tuple[Path | None, Path]],
) -> None:
    """Stage a partition of several Parquet parts (all of one schema): ``keep`` (files of the
    current partition, hard-linked), ``move`` (staged files, renamed in) and ``rewrite`` (written
    as one more part unless empty); the swap goes to ``swaps``. A partition left with no rows
    is to be removed. Partitions are 0700 folders of 0600 files (personal data)."""
    staged = staging_dir(final, PRIVATE_DIR)
    swaps.append((staged, final))
    for f in keep:
        os.link(f, staged / f.name)
        set_mode(staged / f.name, PRIVATE_FILE)
    for k, f in enumerate(move):
        os.replace(f, staged / f"part-{token}-{k:03d}.parquet")
        set_mode(staged / f"part-{token}-{k:03d}.parquet", PRIVATE_FILE)
    if rewrite is not None:
        out = staged / f"part-{token}-rw.parquet"
        rewrite.sink_parquet(out, **RAW_PARQUET, engine="streaming")
        set_mode(out, PRIVATE_FILE)
        if _parquet_rows(out) == 0:
            out.unlink()
    if not any(staged.iterdir()):
        shutil.rmtree(staged, ignore_errors=True)
        swaps[-1] = (None, final)


def _id_ranges(path: Path) -> list[tuple[str, str]] | None:
    """(min, max) of ``shipment_id`` per non-empty row group of a Parquet file, from its footer;
    None when they are unknown (no statistics, unreadable footer)."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_metadata(path)
        cols = [i for i in range(meta.num_columns) if meta.schema.column(i).path == S.SHIPMENT_ID]
        if len(cols) != 1:
            return None
        out: list[tuple[str, str]] = []
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            if group.num_rows == 0:
                continue
            stats = group.column(cols[0]).statistics
            if (
                stats is None
                or not stats.has_min_max
                or not isinstance(stats.min, str)
                or not isinstance(stats.max, str)
            ):
                return None
            out.append((stats.min, stats.max))
        return out
    except Exception:  # any doubt means: read the file
        return None


def _ranges_hold_any(ranges: list[tuple[str, str]] | None, sorted_ids: pl.Series) -> bool:
    """False only when no id of ``sorted_ids`` (sorted, no nulls) falls in any of ``ranges``;
    True when the ranges are unknown. One vectorised search over all ranges."""
    if ranges is None:
        return True
    if sorted_ids.is_empty() or not ranges:
        return False
    first = sorted_ids.search_sorted(pl.Series([a for a, _ in ranges], dtype=pl.String), side="left")
    inside = first < sorted_ids.len()
    if not inside.any():
        return False
    found = sorted_ids.gather(first.filter(inside))
    highs = pl.Series([b for _, b in ranges], dtype=pl.String).filter(inside)
    return bool((found <= highs).any())


def _drop(scan: pl.LazyFrame, rows: pl.Series | None) -> pl.LazyFrame:
    """``scan`` without the rows whose ``_row_number`` is in ``rows`` (input order kept)."""
    return scan if rows is None else scan.filter(~pl.col(_ROW).is_in(rows.implode()))


def _merge_partner(layout: Layout, staged: list[Path], swaps: list[tuple[Path | None, Path]]) -> int:
    """Partner rows by UTC day of ``declared_at``, one row per shipment_id per day (latest wins);
    each day's partition is staged and added to ``swaps`` for the run's journal."""
    new = (
        pl.concat(_keyed(staged, 1), how="diagonal_relaxed")
        .with_columns(pl.col(S.DECLARED_AT).dt.date().alias("_day"))
        .collect(engine="streaming")
    )
    order = [S.SHIPMENT_ID, S.DECLARED_AT, _SEQ, _ORD, _ROW]
    ingested = 0
    existing = _existing_files(layout.raw_partner, "declared_date")
    for (day,), part in sorted(new.partition_by("_day", as_dict=True).items()):
        files = [f for d, f in existing if d == day]
        frames = [
            pl.read_parquet(f)
            .with_row_index(_ROW, offset=1)
            .with_columns(
                pl.col(_ROW).cast(pl.Int64), pl.lit(0, dtype=pl.Int8).alias(_SEQ), pl.lit(i, dtype=pl.Int32).alias(_ORD)
            )
            for i, f in enumerate(files)
        ]
        merged = pl.concat([*frames, part.drop("_day")], how="diagonal_relaxed")
        merged = merged.sort(order).unique(subset=[S.SHIPMENT_ID], keep="last", maintain_order=True)
        ingested += int((merged[_SEQ] == 1).sum())
        cols = _ordered_columns(merged.columns, [*S.PARTNER_SCHEMA, S.SOURCE_FILE, S.INGESTED_AT])
        final = layout.raw_partner_day(day)
        private_dir(final.parent, under=layout.home)
        staged_dir = staging_dir(final, PRIVATE_DIR)
        swaps.append((staged_dir, final))
        write_parquet_atomic(merged.sort(S.SHIPMENT_ID).select(cols), staged_dir / "part-0.parquet", PRIVATE_FILE)
    return ingested
