"""Atomic publication of a night's outputs (contract section 4).

A night's outputs are three directories: ``scores/D``, ``targets/D`` and ``reports/D``. They are
first written completely into hidden staging directories; then a journal naming the staged and
final directories is written (atomically, flushed to disk); then each staged directory is swapped
into place; then the journal is removed. A run killed before the journal exists leaves the
previous outputs of D untouched (its staging directories are swept by the next publication). A
run killed after the journal is written is rolled forward by the next command that publishes
(:func:`stage`, for every day) or reads D (:func:`ensure_complete`: the workbench, the report's
drift history), so the three directories always end up from the same run and no reader is
shown a mixture.

One lock (``.publish/publish.lock``) is held while a journal is written and applied, recovered
or swept; it is never held while a night computes, so readers wait at most for a few renames.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from riskpipe.errors import RiskpipeError
from riskpipe.store import (
    PRIVATE_DIR,
    Layout,
    commit_journal,
    file_lock,
    journal_plan,
    recover_journal,
    replace_dir_atomic,
    staging_dir,
    sweep_leftovers,
)

OUTPUT_KINDS = ("scores", "targets", "reports")

#: staging directories of *another* day younger than this may belong to a run in progress (a
#: night stages and commits within minutes); older ones are leftovers of a killed run.
STALE_STAGING_S = 24 * 3600.0


@dataclass(frozen=True)
class Staged:
    """Staging directories of one run for one date, keyed by output kind."""

    day: date
    dirs: dict[str, Path]

    def __getitem__(self, kind: str) -> Path:
        return self.dirs[kind]


def _final(layout: Layout, kind: str, day: date) -> Path:
    return layout.day_dir(getattr(layout, kind), day)


def _journal_dir(layout: Layout) -> Path:
    return layout.home / ".publish"


def _journal(layout: Layout, day: date) -> Path:
    return _journal_dir(layout) / f"{day.isoformat()}.json"


def _lock(layout: Layout) -> Path:
    return _journal_dir(layout) / "publish.lock"


def sweep_stale(layout: Layout, day: date) -> int:
    """Remove staging and aside leftovers of killed runs for ``day`` (never a published
    directory). Call after :func:`recover` (a journal may name a staging directory)."""
    return sum(sweep_leftovers(_final(layout, kind, day).parent, day.isoformat()) for kind in OUTPUT_KINDS)


def _sweep_other_days(layout: Layout) -> int:
    """Leftovers of other days: aside directories always (every journal is resolved and no
    commit runs while the lock is held), staging directories once they are stale."""
    removed = 0
    for kind in OUTPUT_KINDS:
        parent = getattr(layout, kind)
        if not parent.exists():
            continue
        for leftover in list(parent.glob(".*.old-*")):
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
        removed += sweep_leftovers(parent, "*", older_than_s=STALE_STAGING_S)
    journals = _journal_dir(layout)
    for tmp in journals.glob(".*.tmp-*") if journals.exists() else []:  # a journal write cut short
        tmp.unlink(missing_ok=True)
    return removed


def stage(layout: Layout, day: date) -> Staged:
    """Fresh staging directories for ``day``, after finishing every interrupted publication and
    sweeping what killed runs left."""
    with file_lock(_lock(layout)):
        _recover_all(layout)
        sweep_stale(layout, day)
        _sweep_other_days(layout)
    # targets hold names and addresses (the analyst fields), scores and reports what was risky:
    # owner-only folders, whatever the umask (they are renamed into place as they are)
    return Staged(day, {kind: staging_dir(_final(layout, kind, day), PRIVATE_DIR) for kind in OUTPUT_KINDS})


def commit(layout: Layout, staged: Staged) -> dict[str, Path]:
    """Swap all staged directories into place; returns the final directories."""
    finals = {kind: _final(layout, kind, staged.day) for kind in OUTPUT_KINDS}
    plan = journal_plan(layout.home, [(staged[kind], finals[kind]) for kind in OUTPUT_KINDS])
    with file_lock(_lock(layout)):
        commit_journal(layout.home, _journal(layout, staged.day), plan)
    return finals


def recover(layout: Layout, day: date) -> bool:
    """Finish a publication of ``day`` that was interrupted after its journal was written."""
    if not _journal(layout, day).exists():
        return False
    with file_lock(_lock(layout)):
        return _recover(layout, day)


def ensure_complete(layout: Layout, day: date) -> None:
    """Call before reading a published day: the day's outputs are then all from one run. Costs
    one ``stat`` unless a publication of ``day`` was interrupted (or is being committed)."""
    recover(layout, day)


def _recover(layout: Layout, day: date) -> bool:
    journal = _journal(layout, day)
    try:
        plan = json.loads(journal.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (ValueError, UnicodeDecodeError):
        raise RiskpipeError(f"{journal}: unreadable journal of an interrupted publication") from None
    if "version" in plan:
        return recover_journal(layout.home, journal)
    _roll_forward_v1(plan)  # a journal written before version 2: {kind: [staged, final]}
    journal.unlink(missing_ok=True)
    return True


def _pending_days(layout: Layout) -> list[date]:
    journals = _journal_dir(layout)
    days = []
    for journal in sorted(journals.glob("*.json")) if journals.exists() else []:
        try:
            days.append(date.fromisoformat(journal.stem))
        except ValueError:
            continue
    return days


def _recover_all(layout: Layout) -> None:
    for day in _pending_days(layout):
        _recover(layout, day)


def ensure_all_complete(layout: Layout) -> None:
    """Before listing published days: finish every interrupted publication (one directory
    listing when there is none)."""
    for day in _pending_days(layout):
        recover(layout, day)


def _roll_forward_v1(plan: dict[str, list[str]]) -> None:
    for staged, final in plan.values():
        staged_path, final_path = Path(staged), Path(final)
        if staged_path.exists():  # not yet swapped in (a swapped one no longer exists)
            replace_dir_atomic(staged_path, final_path)


def abandon(staged: Staged) -> None:
    """Drop a run's staging directories (on failure before commit). After a failure inside
    :func:`commit` the journal names them: they are kept for the roll-forward."""
    if _journal(Layout(staged["scores"].parent.parent), staged.day).exists():
        return
    for path in staged.dirs.values():
        shutil.rmtree(path, ignore_errors=True)
