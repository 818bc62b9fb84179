"""Quarantine: whole files (copied, with their reason) and bad rows (original values as text,
with their reason codes), and the counts of reasons.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from riskpipe.ingest.columns import _BAD, _REASONS, _ROW, Q_KIND, Q_REASONS, Q_ROW_NUMBER, Q_RUN_ID, Q_SOURCE_FILE
from riskpipe.ingest.landing import _open_regular, _Refused
from riskpipe.ingest.validation import _Plan
from riskpipe.store import (
    PRIVATE_FILE,
    Layout,
    private_dir,
    sha256_file,
    write_atomic,
    write_text_atomic,
)


def _quarantine_file(layout: Layout, path: Path, digest: str, kind: str, reason: str, detail: str, run_id: str) -> None:
    """Copy a whole file into ``quarantine/files`` with a ``<name>.reason.json`` beside it."""
    private_dir(layout.quarantine_files, under=layout.home)
    target = layout.quarantine_files / path.name
    if target.exists() and (not digest or sha256_file(target) != digest):
        target = layout.quarantine_files / f"{digest[:12]}-{path.name}"
    # streamed from a descriptor opened without following links (any size, never held in memory)

    def copy_into(tmp: Path) -> None:
        with _open_regular(path) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)

    copied = True
    try:
        write_atomic(target, copy_into, PRIVATE_FILE)
    except _Refused as ref:  # replaced by a link since it was listed: record it, copy nothing
        copied, detail = False, f"{detail}; not copied ({ref.reason})"
    info: dict[str, str | bool] = {
        "file": path.name,
        "source_path": str(path),
        "sha256": digest,
        "kind": kind,
        "reason": reason,
        "detail": detail,
        "run_id": run_id,
        "quarantined_at": datetime.now(UTC).isoformat(),
    }
    if not copied:
        info["copied"] = False
    write_text_atomic(json.dumps(info, indent=2) + "\n", target.with_name(target.name + ".reason.json"), PRIVATE_FILE)


def _bad_rows_plan(
    lf: pl.LazyFrame, schema: pl.Schema, plan: _Plan, source_name: str, kind: str, run_id: str
) -> pl.LazyFrame:
    """Rows with at least one reason: original values as strings + source_file, row_number, reasons."""
    originals = [
        _text_raw(c, schema[c]).alias(c)
        for c in schema
        if c not in (_ROW, _REASONS, _BAD, Q_SOURCE_FILE, Q_ROW_NUMBER, Q_REASONS, Q_KIND, Q_RUN_ID)
    ]
    return (
        lf.filter(pl.col(_BAD))
        .with_columns(plan.reasons_expr())
        .select(
            *originals,
            pl.lit(source_name).alias(Q_SOURCE_FILE),
            pl.col(_ROW).cast(pl.Int64).alias(Q_ROW_NUMBER),
            pl.col(_REASONS).alias(Q_REASONS),
            pl.lit(kind).alias(Q_KIND),
            pl.lit(run_id).alias(Q_RUN_ID),
        )
    )


def _text_raw(col: str, dtype: pl.DataType) -> pl.Expr:
    """Original value as a string, untrimmed (quarantine keeps what was filed)."""
    return pl.col(col) if dtype == pl.String else pl.col(col).cast(pl.String, strict=False)


def quarantine_reason_counts(layout: Layout) -> dict[str, int]:
    """Reason code -> count over all quarantined rows and files (for reports)."""
    counts: Counter[str] = Counter()
    files = sorted(layout.quarantine_rows.glob("*.parquet")) if layout.quarantine_rows.exists() else []
    if files:
        frame = (
            pl.concat([pl.scan_parquet(f).select(Q_REASONS) for f in files])
            .explode(Q_REASONS)
            .group_by(Q_REASONS)
            .len()
            .collect()
        )
        counts.update(dict(zip(frame[Q_REASONS].to_list(), frame["len"].to_list(), strict=True)))
    if layout.quarantine_files.exists():
        for info in layout.quarantine_files.glob("*.reason.json"):
            try:
                counts[f"file:{json.loads(info.read_text(encoding='utf-8'))['reason']}"] += 1
            except (json.JSONDecodeError, KeyError):
                counts["file:unknown"] += 1
    return dict(counts)


def _reason_counts(qpath: Path) -> Counter[str]:
    frame = pl.scan_parquet(qpath).select(pl.col(Q_REASONS).explode()).group_by(Q_REASONS).len().collect()
    return Counter(dict(zip(frame[Q_REASONS].to_list(), frame["len"].to_list(), strict=True)))
