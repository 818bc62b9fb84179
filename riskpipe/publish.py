"""Atomic publication of a night's outputs (contract section 4).

A night's outputs are three directories: ``scores/D``, ``targets/D`` and ``reports/D``. They are
first written completely into hidden staging directories; then a journal naming the staged and
final directories is written (atomically); then each staged directory is swapped into place; then
the journal is removed. A run killed before the journal exists leaves the previous outputs of D
untouched (the stale staging directories are swept by the next run). A run killed after the
journal is written is rolled forward by the next command that publishes or reads D
(:func:`recover`), so the three directories always end up from the same run.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from riskpipe.store import Layout, replace_dir_atomic, staging_dir, write_text_atomic

OUTPUT_KINDS = ("scores", "targets", "reports")


@dataclass(frozen=True)
class Staged:
    """Staging directories of one run for one date, keyed by output kind."""

    day: date
    dirs: dict[str, Path]

    def __getitem__(self, kind: str) -> Path:
        return self.dirs[kind]


def _final(layout: Layout, kind: str, day: date) -> Path:
    return layout.day_dir(getattr(layout, kind), day)


def _journal(layout: Layout, day: date) -> Path:
    return layout.home / ".publish" / f"{day.isoformat()}.json"


def sweep_stale(layout: Layout, day: date) -> int:
    """Remove staging leftovers of killed runs for ``day`` (never a published directory)."""
    removed = 0
    for kind in OUTPUT_KINDS:
        final = _final(layout, kind, day)
        if not final.parent.exists():
            continue
        for leftover in final.parent.glob(f".{final.name}.staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
        for leftover in final.parent.glob(f".{final.name}.old-*"):
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
    return removed


def stage(layout: Layout, day: date) -> Staged:
    """Fresh staging directories for ``day`` (after finishing any interrupted publication)."""
    recover(layout, day)
    sweep_stale(layout, day)
    return Staged(day, {kind: staging_dir(_final(layout, kind, day)) for kind in OUTPUT_KINDS})


def commit(layout: Layout, staged: Staged) -> dict[str, Path]:
    """Swap all staged directories into place; returns the final directories."""
    journal = _journal(layout, staged.day)
    plan = {kind: [str(staged[kind]), str(_final(layout, kind, staged.day))] for kind in OUTPUT_KINDS}
    write_text_atomic(json.dumps(plan), journal)
    _roll_forward(plan)
    journal.unlink(missing_ok=True)
    return {kind: Path(final) for kind, (_, final) in plan.items()}


def recover(layout: Layout, day: date) -> bool:
    """Finish a publication of ``day`` that was interrupted after its journal was written."""
    journal = _journal(layout, day)
    if not journal.exists():
        return False
    plan = json.loads(journal.read_text(encoding="utf-8"))
    _roll_forward(plan)
    journal.unlink(missing_ok=True)
    return True


def _roll_forward(plan: dict[str, list[str]]) -> None:
    for staged, final in plan.values():
        staged_path, final_path = Path(staged), Path(final)
        if staged_path.exists():  # not yet swapped in (a swapped one no longer exists)
            replace_dir_atomic(staged_path, final_path)


def abandon(staged: Staged) -> None:
    """Drop a run's staging directories (on failure before commit)."""
    for path in staged.dirs.values():
        shutil.rmtree(path, ignore_errors=True)
