"""The data home layout, atomic writes and partitions.

Every output is written under a temporary name in the same directory and renamed into place,
so a reader never sees a half-written file.
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl


@dataclass(frozen=True)
class Layout:
    """Where everything lives under a data home."""

    home: Path

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def raw(self) -> Path:
        return self.home / "raw"

    @property
    def raw_shipments(self) -> Path:
        return self.raw / "shipments"

    @property
    def raw_partner(self) -> Path:
        return self.raw / "partner_exports"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def quarantine_files(self) -> Path:
        return self.quarantine / "files"

    @property
    def quarantine_rows(self) -> Path:
        return self.quarantine / "rows"

    @property
    def truth(self) -> Path:
        """Synthetic ground truth: read by evaluation code only."""
        return self.home / "truth"

    @property
    def history(self) -> Path:
        return self.home / "history"

    @property
    def features(self) -> Path:
        return self.home / "features"

    @property
    def scores(self) -> Path:
        return self.home / "scores"

    @property
    def targets(self) -> Path:
        return self.home / "targets"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def prefect_home(self) -> Path:
        return self.home / ".prefect"

    def partition(self, base: Path, day: date) -> Path:
        """Hive-style partition directory ``base/arrival_date=YYYY-MM-DD``."""
        return base / f"arrival_date={day.isoformat()}"

    def raw_shipments_day(self, day: date) -> Path:
        return self.partition(self.raw_shipments, day)

    def raw_partner_day(self, day: date) -> Path:
        """Partner declarations declared on ``day`` (UTC date of ``declared_at``)."""
        return self.raw_partner / f"declared_date={day.isoformat()}"

    def raw_days(self) -> list[date]:
        """Arrival dates present in the raw shipment store, ascending."""
        if not self.raw_shipments.exists():
            return []
        days = []
        for p in self.raw_shipments.glob("arrival_date=*"):
            if p.is_dir() and any(p.glob("*.parquet")):
                days.append(date.fromisoformat(p.name.split("=", 1)[1]))
        return sorted(days)

    def day_dir(self, base: Path, day: date) -> Path:
        """Output directory ``base/YYYY-MM-DD`` (scores, targets, reports, features)."""
        return base / day.isoformat()


def sha256_file(path: Path) -> str:
    """Content hash of a file, read in 1 MiB chunks (ingest ledger, model artifacts)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    try:
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_bytes_atomic(data: bytes, path: Path) -> Path:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(text: str, path: Path) -> Path:
    return write_bytes_atomic(text.encode("utf-8"), path)


def replace_dir_atomic(staged: Path, final: Path) -> None:
    """Swap a fully written staging directory into place.

    The old directory is renamed aside first, then the staged one renamed in, then the old one
    removed; both renames are atomic on one filesystem, so a reader sees the old or the new
    complete directory (or, for an instant between the renames, none), never a mixture.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_dir(final: Path) -> Path:
    """A fresh empty staging directory next to ``final`` (same filesystem, hidden name)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = final.with_name(f".{final.name}.staging-{uuid.uuid4().hex[:8]}")
    staged.mkdir()
    return staged


def scan_raw_shipments(layout: Layout, days: list[date] | None = None) -> pl.LazyFrame:
    """Lazy scan of the normalised manifests (``raw/shipments``) for ``days`` (default: all).

    Invariant kept by ingest: a partition holds exactly one row per ``shipment_id`` (its latest
    version) and every row carries its ``arrival_date`` column, so no hive parsing is needed.
    Returns an empty frame with the raw schema when nothing matches.
    """
    from riskpipe import schema as S

    wanted = layout.raw_days() if days is None else [d for d in days if d in set(layout.raw_days())]
    files = [str(f) for d in wanted for f in sorted(layout.raw_shipments_day(d).glob("*.parquet"))]
    if not files:
        return pl.LazyFrame(schema=S.RAW_SHIPMENT_SCHEMA)
    return pl.scan_parquet(files, hive_partitioning=False)


def scan_raw_partner(layout: Layout, days: list[date] | None = None) -> pl.LazyFrame:
    """Lazy scan of partner export declarations for the given declaration days (default all).

    Partner rows are partitioned by the UTC date of ``declared_at``
    (``raw/partner_exports/declared_date=D``), one row per ``shipment_id`` per partition (the
    latest ``declared_at``); a reader matching them to manifests of arrival day D scans a window
    of declaration days before D and keeps the latest row per ``shipment_id``."""
    from riskpipe import schema as S

    base = layout.raw_partner
    if not base.exists():
        return pl.LazyFrame(schema=S.PARTNER_SCHEMA)
    parts = sorted(p for p in base.glob("declared_date=*") if p.is_dir())
    if days is not None:
        keep = {f"declared_date={d.isoformat()}" for d in days}
        parts = [p for p in parts if p.name in keep]
    files = [str(f) for p in parts for f in sorted(p.glob("*.parquet"))]
    if not files:
        return pl.LazyFrame(schema=S.PARTNER_SCHEMA)
    return pl.scan_parquet(files, hive_partitioning=False)
