"""The data home layout, atomic writes, partitions, journals and private files.

Every output is written under a temporary name in the same directory and renamed into place,
so a reader never sees a half-written file. Replacing several directories at once (a night's
outputs, the partitions an ingest run touches) goes through a journal (:func:`commit_journal`):
the plan is written first and rolled forward by whoever finds it next, so a crash between two
renames never leaves a directory missing or a mixture of two runs.

Files holding hashes or personal data are created 0600 in 0700 directories whatever the umask
(``mode=PRIVATE_FILE`` on the atomic writers, :func:`private_dir`).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import polars as pl

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError

#: modes of files and directories holding hashes or personal data (owner only).
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


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
    def raw_superseded(self) -> Path:
        """Filings replaced by a later filing of the same shipment (kept: point in time)."""
        return self.raw / "shipments_superseded"

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

    @property
    def ingest_dir(self) -> Path:
        """The ingest ledger, run log, journal and lock."""
        return self.home / "ingest"

    @property
    def raw_journal(self) -> Path:
        """The plan of an ingest run's partition swaps, present only while it is being applied."""
        return self.ingest_dir / "journal.json"

    @property
    def ingest_lock(self) -> Path:
        """Held by an ingest run from start to end (one run at a time)."""
        return self.ingest_dir / "ingest.lock"

    def partition(self, base: Path, day: date) -> Path:
        """Hive-style partition directory ``base/arrival_date=YYYY-MM-DD``."""
        return base / f"arrival_date={day.isoformat()}"

    def raw_shipments_day(self, day: date) -> Path:
        return self.partition(self.raw_shipments, day)

    def raw_superseded_day(self, day: date) -> Path:
        """Superseded filings of shipments arriving on ``day`` (as the superseded filing said)."""
        return self.partition(self.raw_superseded, day)

    def raw_partner_day(self, day: date) -> Path:
        """Partner declarations declared on ``day`` (UTC date of ``declared_at``)."""
        return self.raw_partner / f"declared_date={day.isoformat()}"

    def raw_days(self) -> list[date]:
        """Arrival dates present in the raw shipment store, ascending."""
        ensure_raw_complete(self)
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


def set_mode(path: Path, mode: int) -> None:
    """``chmod`` unless already so (a file or folder someone else owns is left as it is)."""
    try:
        if path.stat().st_mode & 0o7777 != mode:
            os.chmod(path, mode)
    except PermissionError:
        pass


def private_dir(path: Path, under: Path | None = None) -> Path:
    """Create ``path`` (and its parents) with mode 0700 whatever the umask; with ``under``, every
    folder below ``under`` down to ``path`` is made 0700 too (``under`` itself is left alone)."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    levels = [path]
    if under is not None:
        levels += [p for p in path.parents if under in p.parents]
    for p in levels:
        set_mode(p, PRIVATE_DIR)
    return path


def _new_tmp(path: Path, mode: int | None) -> Path:
    """A fresh temporary sibling; created empty with ``mode`` first, so the data written into it
    is never readable by others, not even for an instant."""
    tmp = tmp_sibling(path)
    if mode is not None:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        os.chmod(tmp, mode)  # the umask may have removed bits we want (never added any)
    return tmp


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[Path], object], mode: int | None = None) -> Path:
    """``write(tmp)`` into a temporary sibling of ``path``, then an atomic rename onto ``path``:
    a reader sees the old file or the whole new one, never a half-written file, whatever the
    format (``frame.write_csv``, ``frame.write_ndjson``, ...). ``mode`` as in
    :func:`write_parquet_atomic`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_tmp(path, mode)
    try:
        write(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet_atomic(frame: pl.DataFrame, path: Path, mode: int | None = None) -> Path:
    """Write ``frame`` to ``path`` via a temporary file and an atomic rename (``mode``: the
    file's permissions, e.g. :data:`PRIVATE_FILE`; default: the umask's)."""
    return write_atomic(path, frame.write_parquet, mode)


def write_bytes_atomic(data: bytes, path: Path, mode: int | None = None, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename; ``durable`` also
    flushes the file and its folder to disk (journals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_tmp(path, mode)
    try:
        tmp.write_bytes(data)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(text: str, path: Path, mode: int | None = None) -> Path:
    return write_bytes_atomic(text.encode("utf-8"), path, mode)


def append_lines(path: Path, lines: list[str], once: bool = False, mode: int = PRIVATE_FILE) -> None:
    """Append text lines to a log file (created with ``mode``) and flush them to disk.

    ``once``: skip lines the file already holds (a journal rolled forward twice appends its
    records once). A torn last line left by a crash is ended first, so it cannot swallow the
    next record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, mode)
    with os.fdopen(fd, "r+b") as fh:
        try:
            os.fchmod(fd, mode)  # also tightens a log written by an older version
        except PermissionError:
            pass
        size = os.fstat(fd).st_size
        head = b""
        if size:
            fh.seek(size - 1)
            if fh.read(1) != b"\n":
                head = b"\n"
        if once and size:
            fh.seek(0)
            present = set(fh.read().decode("utf-8", errors="replace").splitlines())
            lines = [x for x in lines if x not in present]
        if lines or head:
            fh.write(head + "".join(x + "\n" for x in lines).encode("utf-8"))
            fh.flush()
            os.fsync(fd)


@contextmanager
def file_lock(path: Path, blocking: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` for the block; yields False (without waiting) when
    ``blocking`` is off and another process or thread holds it. The kernel releases it when
    its holder dies, so a crash never leaves a stale lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            held = False
        else:
            held = True
        try:
            yield held
        finally:
            if held:
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def replace_dir_atomic(staged: Path, final: Path) -> None:
    """Swap a fully written staging directory into place.

    The old directory is renamed aside first, then the staged one renamed in, then the old one
    removed; both renames are atomic on one filesystem, so a reader sees the old or the new
    complete directory (or, for an instant between the renames, none), never a mixture. A crash
    between the two renames is repaired only when the swap is part of a journal
    (:func:`commit_journal`): rolling it forward renames the staged directory in.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_dir_atomic(final: Path) -> None:
    """Remove a directory so that a reader sees it whole or not at all (renamed aside first)."""
    if final.exists():
        aside = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, aside)
        shutil.rmtree(aside, ignore_errors=True)


def staging_dir(final: Path, mode: int | None = None) -> Path:
    """A fresh empty staging directory next to ``final`` (same filesystem, hidden name); with
    ``mode`` (e.g. :data:`PRIVATE_DIR`) it gets exactly those permissions."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staged = final.with_name(f".{final.name}.staging-{uuid.uuid4().hex[:8]}")
    staged.mkdir()
    if mode is not None:
        os.chmod(staged, mode)
    return staged


def sweep_leftovers(parent: Path, pattern: str = "*", older_than_s: float | None = None) -> int:
    """Remove the staging (``.<name>.staging-*``) and aside (``.<name>.old-*``) directories of
    interrupted swaps under ``parent`` whose name matches ``.<pattern>``. Only call it once the
    journals that may name them are resolved, and only where no live run stages (or with
    ``older_than_s``: leftovers untouched for that long)."""
    if not parent.exists():
        return 0
    removed = 0
    now = time.time()
    for glob in (f".{pattern}.staging-*", f".{pattern}.old-*"):
        for leftover in parent.glob(glob):
            try:
                if older_than_s is not None and now - leftover.stat().st_mtime < older_than_s:
                    continue
            except FileNotFoundError:
                continue
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
    return removed


#: a scratch folder of another machine (a shared home) untouched this long is a leftover
STALE_SCRATCH_S = 24 * 3600


def _host() -> str:
    return "".join(c if c.isalnum() else "_" for c in os.uname().nodename)[:40] or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextmanager
def scratch_dir(parent: Path, name: str, under: Path | None = None) -> Iterator[Path]:
    """A private (0700) scratch folder ``parent/.scratch-<name>-<host>-<pid>-<random>`` for
    spilled work files, removed on exit, failure included. A process killed outright cannot
    remove its own: on entry, those of ``name`` left by a dead process of this machine, or
    untouched for :data:`STALE_SCRATCH_S` (another machine's, on a shared home), are removed,
    so a killed build's spill does not stay on disk (it can be the size of the day)."""
    private_dir(parent, under=under)
    host, now = _host(), time.time()
    for old in parent.glob(f".scratch-{name}-*"):
        rest = old.name[len(f".scratch-{name}-") :].rsplit("-", 2)
        try:
            dead = len(rest) == 3 and rest[0] == host and not _pid_alive(int(rest[1]))
            stale = now - old.stat().st_mtime > STALE_SCRATCH_S
        except (ValueError, FileNotFoundError):
            continue
        if dead or stale:
            shutil.rmtree(old, ignore_errors=True)
    folder = parent / f".scratch-{name}-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(mode=PRIVATE_DIR)
    set_mode(folder, PRIVATE_DIR)  # whatever the umask
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# journals: several directory swaps (and log appends) that take effect together
# ---------------------------------------------------------------------------------------------
def _journal_path(home: Path, rel: str) -> Path:
    """A path named in a journal (relative to the home, so a moved home still recovers)."""
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise RiskpipeError(f"journal under {home}: {rel!r} is not a path inside the data home")
    return home / p


def _rel(home: Path, path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return str(Path(path).relative_to(home))
    except ValueError:  # one of them absolute, the other not
        return str(Path(path).resolve().relative_to(Path(home).resolve()))


def journal_plan(
    home: Path,
    swaps: list[tuple[Path | None, Path]],
    moves: list[tuple[Path, Path]] | None = None,
    appends: list[tuple[Path, list[str]]] | None = None,
) -> dict:
    """A plan for :func:`commit_journal`: ``swaps`` (staged directory, final directory; staged
    None removes the final one), ``moves`` (file renames) and ``appends`` (lines for log files,
    applied after every swap and move). Every path lies under ``home``."""
    return {
        "version": 2,
        "swaps": [[_rel(home, a), _rel(home, b)] for a, b in swaps],
        "moves": [[_rel(home, a), _rel(home, b)] for a, b in moves or []],
        "appends": [[_rel(home, p), list(lines)] for p, lines in appends or []],
    }


def commit_journal(home: Path, journal: Path, plan: dict) -> None:
    """Make a plan take effect as one step: write it (durably), apply it, remove it. A crash at
    any point leaves either no journal (nothing changed yet) or a journal that
    :func:`recover_journal` rolls forward. Call with the lock that serialises writers held."""
    write_bytes_atomic(json.dumps(plan).encode("utf-8"), journal, PRIVATE_FILE, durable=True)
    apply_plan(home, plan, recovering=False)
    journal.unlink(missing_ok=True)


def recover_journal(home: Path, journal: Path) -> bool:
    """Roll an interrupted plan forward (with the writers' lock held); True if there was one."""
    try:
        plan = json.loads(journal.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (ValueError, UnicodeDecodeError):
        raise RiskpipeError(f"{journal}: unreadable journal of an interrupted run") from None
    apply_plan(home, plan, recovering=True)
    journal.unlink(missing_ok=True)
    return True


def apply_plan(home: Path, plan: dict, recovering: bool) -> None:
    """Apply a journal's plan; every step is idempotent, so a plan can be rolled forward again
    from any point at which a previous attempt died."""
    for staged, final in plan.get("swaps", []):
        final_path = _journal_path(home, final)
        if staged is None:
            remove_dir_atomic(final_path)
        else:
            staged_path = _journal_path(home, staged)
            if staged_path.exists():  # not yet swapped in (a swapped one no longer exists)
                replace_dir_atomic(staged_path, final_path)
    for src, dst in plan.get("moves", []):
        src_path = _journal_path(home, src)
        if src_path.exists():
            os.replace(src_path, _journal_path(home, dst))
    for path, lines in plan.get("appends", []):
        append_lines(_journal_path(home, path), lines, once=recovering)


def ensure_raw_complete(layout: Layout, wait_s: float = 300.0) -> None:
    """Before reading the raw store: roll an interrupted ingest run forward. Costs one ``stat``
    when there is none; waits while a live run applies its journal (a few renames)."""
    journal = layout.raw_journal
    if not journal.exists():
        return
    deadline = time.monotonic() + wait_s
    while journal.exists():
        with file_lock(layout.ingest_lock, blocking=False) as held:
            if held:
                recover_journal(layout.home, journal)
                return
        if time.monotonic() > deadline:
            raise RiskpipeError(f"{journal}: an ingest run has held it for over {wait_s:.0f} s; try again later")
        time.sleep(0.05)


def scan_raw_shipments(layout: Layout, days: list[date] | None = None, as_of: datetime | None = None) -> pl.LazyFrame:
    """Lazy scan of the normalised manifests (``raw/shipments``) for ``days`` (default: all).

    Invariant kept by ingest: a partition holds exactly one row per ``shipment_id`` (its latest
    version) and every row carries its ``arrival_date`` column, so no hive parsing is needed.
    Returns an empty frame with the raw schema when nothing matches.

    ``as_of`` (a rebuild of a past day passes its cut-off, :func:`riskpipe.cutoff.day_cutoff`):
    each shipment as its latest filing made before ``as_of`` said, from the superseded filings
    ingest keeps (:func:`as_of_filings`), wherever that filing's arrival day is: a shipment
    amended onto a day after ``as_of`` is read on the day its earlier filing said, not on this
    one (:func:`_moved_in`). Default: the latest filing (the current night). A day without
    superseded filings, and onto which no shipment was moved after ``as_of``, is read exactly
    as without ``as_of``.
    """
    ensure_raw_complete(layout)
    present = layout.raw_days()  # once: a listing per wanted day cost the workbench 60 ms a page
    wanted = present if days is None else [d for d in days if d in set(present)]
    files = [str(f) for d in wanted for f in sorted(layout.raw_shipments_day(d).glob("*.parquet"))]
    amended: dict[date, list[Path]] = {}
    moved = pl.DataFrame(schema={S.SHIPMENT_ID: pl.String, S.ARRIVAL_DATE: pl.Date})
    if as_of is not None and layout.raw_superseded.exists():
        # a day whose shipments all moved to another day since still has its superseded filings
        asked = sorted(set(wanted) | set(days or [])) if days is not None else _days_with_parts(layout)
        amended = {d: fs for d in asked if (fs := sorted(layout.raw_superseded_day(d).glob("*.parquet")))}
        moved = _moved_in(layout, files, as_of)
        for d in moved.get_column(S.ARRIVAL_DATE).unique().to_list():
            amended.setdefault(d, [])
    if not amended:
        if not files:
            return pl.LazyFrame(schema=S.RAW_SHIPMENT_SCHEMA)
        return pl.scan_parquet(files, hive_partitioning=False)
    assert as_of is not None
    plain = [str(f) for d in wanted if d not in amended for f in sorted(layout.raw_shipments_day(d).glob("*.parquet"))]
    here = [str(f) for d in amended for f in sorted(layout.raw_shipments_day(d).glob("*.parquet"))]
    current = pl.scan_parquet(here, hive_partitioning=False) if here else pl.LazyFrame(schema=S.RAW_SHIPMENT_SCHEMA)
    names = current.collect_schema().names()
    kept = [str(f) for fs in amended.values() for f in fs]
    olds = [pl.scan_parquet(kept, hive_partitioning=False)] if kept else []
    elsewhere = [
        str(f)
        for p in (sorted(layout.raw_superseded.glob("arrival_date=*")) if moved.height else [])
        if date.fromisoformat(p.name.split("=", 1)[1]) not in amended
        for f in sorted(p.glob("*.parquet"))
    ]
    if elsewhere:
        # the earlier filings, kept on other days, of shipments amended onto these days after as_of
        ids = moved.get_column(S.SHIPMENT_ID).implode()
        olds.append(pl.scan_parquet(elsewhere, hive_partitioning=False).filter(pl.col(S.SHIPMENT_ID).is_in(ids)))
    old = pl.concat(olds, how="diagonal_relaxed") if olds else pl.LazyFrame(schema=S.RAW_SHIPMENT_SCHEMA)
    resolved = as_of_filings(current, old, as_of)
    if moved.height:  # a moved shipment whose filing at as_of said another day is not on these days
        resolved = resolved.filter(pl.col(S.ARRIVAL_DATE).is_in(pl.Series(asked, dtype=pl.Date).implode()))
    resolved = resolved.select(names)
    if not plain:
        return resolved
    return pl.concat([pl.scan_parquet(plain, hive_partitioning=False), resolved], how="diagonal_relaxed")


def _moved_in(layout: Layout, files: list[str], as_of: datetime) -> pl.DataFrame:
    """(shipment id, arrival day) of the current filings in ``files`` made at or after ``as_of``
    that replaced a kept (superseded) filing, wherever that filing's arrival day is.

    A late amendment can move a shipment onto a day: as of ``as_of`` the shipment is where its
    earlier filing said, which is kept in that other day's superseded partition (matching a
    day's current rows against its own superseded filings only missed it). Superseded filings
    are few: the ids replaced at or after ``as_of`` are read first, the current rows' ids only
    when there are any."""
    empty = pl.DataFrame(schema={S.SHIPMENT_ID: pl.String, S.ARRIVAL_DATE: pl.Date})
    kept = sorted(str(f) for f in layout.raw_superseded.glob("arrival_date=*/*.parquet"))
    if not kept or not files:
        return empty
    late = (
        pl.scan_parquet(kept, hive_partitioning=False)
        .filter(pl.col(S.SUPERSEDED_BY_FILED_AT) >= as_of)
        .select(S.SHIPMENT_ID)
        .unique()
        .collect()
        .get_column(S.SHIPMENT_ID)
    )
    if late.is_empty():
        return empty
    return (
        pl.scan_parquet(files, hive_partitioning=False)
        .filter((pl.col(S.FILED_AT) >= as_of) & pl.col(S.SHIPMENT_ID).is_in(late.implode()))
        .select(S.SHIPMENT_ID, pl.col(S.ARRIVAL_DATE).cast(pl.Date))
        .collect()
    )


def _days_with_parts(layout: Layout) -> list[date]:
    """Arrival days of the raw store or of its superseded filings, ascending."""
    days = set(layout.raw_days())
    for p in layout.raw_superseded.glob("arrival_date=*"):
        if p.is_dir() and any(p.glob("*.parquet")):
            days.add(date.fromisoformat(p.name.split("=", 1)[1]))
    return sorted(days)


def as_of_filings(current: pl.LazyFrame, superseded: pl.LazyFrame, as_of: datetime) -> pl.LazyFrame:
    """Per shipment, the filing valid at ``as_of``: filed before it and not yet replaced then
    (``superseded_by_filed_at`` >= ``as_of`` or, for the current filing, never); a shipment
    filed only after ``as_of`` keeps its first filing (a rebuilt day keeps every shipment it
    held). Only the shipments with a superseded filing are resolved (windows over a few rows);
    the others pass as stored. Columns: those of ``current`` plus the superseded ones (null)."""
    ids = superseded.select(S.SHIPMENT_ID).unique()
    untouched = current.join(ids, on=S.SHIPMENT_ID, how="anti")
    nulls = [pl.lit(None, dtype=t).alias(c) for c, t in S.SUPERSEDED_DERIVED.items()]
    cand = pl.concat(
        [current.join(ids, on=S.SHIPMENT_ID, how="semi").with_columns(nulls), superseded], how="diagonal_relaxed"
    )
    filed, until = pl.col(S.FILED_AT), pl.col(S.SUPERSEDED_BY_FILED_AT)
    before = filed < as_of
    valid = before & (until.is_null() | (until >= as_of))
    # a tie of filing times: the one filed in the same instant that replaced it is the later
    last_of_tie = until.is_null() | (until > filed)
    keep = (
        pl.when(before.any().over(S.SHIPMENT_ID))
        .then(valid & (filed == filed.filter(valid).max().over(S.SHIPMENT_ID)))
        .otherwise((filed == filed.min().over(S.SHIPMENT_ID)) & last_of_tie)
    )
    chosen = cand.filter(keep)
    return pl.concat([untouched.with_columns(nulls), chosen], how="diagonal_relaxed")


def scan_raw_partner(layout: Layout, days: list[date] | None = None) -> pl.LazyFrame:
    """Lazy scan of partner export declarations for the given declaration days (default all).

    Partner rows are partitioned by the UTC date of ``declared_at``
    (``raw/partner_exports/declared_date=D``), one row per ``shipment_id`` per partition (the
    latest ``declared_at``); a reader matching them to manifests of arrival day D scans a window
    of declaration days before D and keeps the latest row per ``shipment_id``."""
    ensure_raw_complete(layout)
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
