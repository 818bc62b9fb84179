"""Checks before a run starts Prefect: a call that cannot succeed fails in well under a second
with one line, instead of after Prefect's 7-14 s start (and a database created in a mistyped
home). Cheap by design: directory listings and stats, and the champion's load (which the run
does anyway). The flows keep their own checks: a scheduled run passes through none of these.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import date
from pathlib import Path

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.errors import RiskpipeError
from riskpipe.store import Layout


def check_home(home: Path) -> None:
    """The data home must exist: a mistyped ``--home`` is not created by a run."""
    if not home.is_dir():
        what = "is not a folder" if home.exists() else "does not exist"
        raise RiskpipeError(
            f"data home {home} {what}: give --home (or RISKPIPE_HOME) an existing home, "
            "or make one with `riskpipe generate` or `riskpipe demo`"
        )


def day_ingested(layout: Layout, day: date) -> bool:
    """The raw store holds the manifests of ``day`` (or an ingest run is being applied, which
    may bring it: the run waits for it)."""
    part = layout.raw_shipments_day(day)
    return layout.raw_journal.exists() or (part.is_dir() and any(part.glob("*.parquet")))


def pending_landing_files(layout: Layout) -> list[Path]:
    """Manifest files in the landing folder that no ingest run has seen as they are now: not in
    the ledger by name, or changed since its last write. Files are named freely (the contract),
    so which days they hold is only known by ingesting them."""
    landing = layout.landing
    if not landing.is_dir():
        return []
    from riskpipe.ingest import ledger_path

    ledger = ledger_path(layout)
    seen: set[str] = set()
    ledger_mtime = 0.0
    if ledger.exists():
        ledger_mtime = ledger.stat().st_mtime
        for line in ledger.read_text(encoding="utf-8").splitlines():
            try:
                seen.add(json.loads(line)["file"])
            except (ValueError, KeyError, TypeError):
                continue
    pending = []
    with os.scandir(landing) as entries:
        for entry in entries:
            if entry.name.startswith((".", "_", S.PARTNER_FILE_PREFIX)):
                continue
            info = entry.stat()  # a link the operator put there counts as what it points to
            if stat.S_ISREG(info.st_mode) and (entry.name not in seen or info.st_mtime > ledger_mtime):
                pending.append(landing / entry.name)
    return sorted(pending)


def _span(layout: Layout) -> str:
    base = layout.raw_shipments
    days = sorted(p.name.split("=", 1)[1] for p in base.glob("arrival_date=*")) if base.is_dir() else []
    return f"{days[0]}..{days[-1]}" if days else "none"


def check_nightly(layout: Layout, settings: Settings, day: date, ingest: bool, allow_rules_only: bool) -> None:
    """Before ``riskpipe nightly``: the home exists; the day is ingested, or (when the night
    ingests first) new files wait in the landing folder; the champion is usable, or rules-only
    nights are allowed."""
    check_home(layout.home)
    if not day_ingested(layout, day):
        if not ingest:
            raise RiskpipeError(
                f"nightly {day}: no ingested manifests for arrival date {day} in {layout.home} "
                f"(raw store has: {_span(layout)}); ingest them first, or drop --skip-ingest"
            )
        if not pending_landing_files(layout):
            raise RiskpipeError(
                f"nightly {day}: no ingested manifests for arrival date {day} in {layout.home} "
                f"(raw store has: {_span(layout)}) and no new files in {layout.landing}"
            )
    if not allow_rules_only:
        from riskpipe.score import champion_state

        state = champion_state(settings)
        if state.model is None:
            raise RiskpipeError(
                f"nightly {day}: {state.problem}; or pass --allow-rules-only to rank the night by the rules alone"
            )


def check_retrain(layout: Layout, settings: Settings, until: date | None, force: bool) -> None:
    """Before ``riskpipe retrain``: the home exists, holds ingested days (up to ``until``), and
    its champion is usable or absent (a broken one is only replaced with ``force``)."""
    check_home(layout.home)
    base = layout.raw_shipments
    days = sorted(p.name.split("=", 1)[1] for p in base.glob("arrival_date=*")) if base.is_dir() else []
    if not [d for d in days if until is None or d <= until.isoformat()] and not layout.raw_journal.exists():
        upto = f" up to {until}" if until else ""
        raise RiskpipeError(
            f"retrain: no ingested manifests{upto} in {layout.home} (raw store has: {_span(layout)}); "
            "run `riskpipe ingest` first"
        )
    if not force:
        from riskpipe.score import champion_state

        state = champion_state(settings)
        if state.registered and state.model is None:
            raise RiskpipeError(
                f"retrain: {state.problem}; refusing to promote a challenger without comparing it "
                "(repair the champion, or rerun with --force to promote without comparison)"
            )
