"""One ingest run: list the landing files, stage each (or quarantine it), merge, and commit the
partitions, quarantined rows, ledger and run log together through one journal.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from riskpipe.ingest.landing import _is_partner, _list_inputs, _Refused, _sha256_regular
from riskpipe.ingest.ledger import _ingest_dir, _jsonl, _read_ledger, ledger_path, runs_path
from riskpipe.ingest.merge import _contested_ids, _merge_partner, _merge_shipments
from riskpipe.ingest.normalise import _stage_file
from riskpipe.ingest.quarantine import _quarantine_file, _reason_counts
from riskpipe.ingest.readers import _FileRejected
from riskpipe.ingest.summary import FileResult, IngestSummary
from riskpipe.ingest.validation import load_countries, load_fx_rates
from riskpipe.store import (
    PRIVATE_FILE,
    Layout,
    commit_journal,
    file_lock,
    journal_plan,
    private_dir,
    recover_journal,
    set_mode,
    sweep_leftovers,
)


def ingest_paths(
    layout: Layout,
    paths: list[Path] | None = None,
    fx_rates_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> IngestSummary:
    """Ingest manifest and partner files (default: the top-level files of ``layout.landing``).

    One broken file is quarantined, never fatal; a symbolic link or special file is refused
    (reported, never read); the counts are returned and appended to ``<home>/ingest/runs.jsonl``.

    Crash safety: one run at a time (``ingest/ingest.lock``). A run first rolls forward a run
    that was killed while applying its journal, then sweeps what killed runs left (staging and
    aside folders, work folders). It stages every partition it changes, then writes one journal
    naming the swaps, the quarantined-row files and its ledger and run-log records, and applies
    it: a file is in the ledger only once its rows are in place, and a run killed at any point
    is either invisible (no journal: its files are ingested again) or completed exactly once.
    """
    private_dir(layout.ingest_dir, under=layout.home)
    with file_lock(layout.ingest_lock):
        recover_journal(layout.home, layout.raw_journal)
        _sweep_raw_leftovers(layout)
        return _ingest_locked(layout, paths, fx_rates_path, progress)


def _sweep_raw_leftovers(layout: Layout) -> int:
    """Staging and aside partitions and work folders of killed ingest runs (with the ingest lock
    held and the journal resolved: nothing live or pending can be named by them)."""
    removed = sweep_leftovers(layout.raw_shipments, "arrival_date=*")
    removed += sweep_leftovers(layout.raw_superseded, "arrival_date=*")
    removed += sweep_leftovers(layout.raw_partner, "declared_date=*")
    for work in layout.ingest_dir.glob(".run-[0-9]*"):  # not .run-labels-* (labels import)
        shutil.rmtree(work, ignore_errors=True)
        removed += 1
    for tmp in layout.ingest_dir.glob(f".{layout.raw_journal.name}.tmp-*"):  # a journal write cut short
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def _ingest_locked(
    layout: Layout,
    paths: list[Path] | None,
    fx_rates_path: Path | None,
    progress: Callable[[int, int], None] | None,
) -> IngestSummary:
    started = time.perf_counter()
    refused: list[tuple[Path, str]] = []
    files = _list_inputs(layout, paths, refused)
    fx_frame = load_fx_rates(fx_rates_path)
    fx = dict(zip(fx_frame["currency"].to_list(), fx_frame["usd_per_unit"].to_list(), strict=True))
    countries = load_countries()
    ingested_at = datetime.now(UTC).replace(microsecond=0)
    run_id = f"{ingested_at:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    summary = IngestSummary(run_id=run_id)
    seen = _read_ledger(ledger_path(layout))
    total_steps = len(files) + 1
    if progress:
        progress(0, total_steps)

    workdir = private_dir(_ingest_dir(layout) / f".run-{run_id}", under=layout.home)
    private_dir(layout.quarantine_rows, under=layout.home)
    staged: dict[str, list[Path]] = {"manifest": [], "partner": []}
    valid_total = 0
    ledger_records: list[dict] = []
    reasons: Counter[str] = Counter()
    swaps: list[tuple[Path | None, Path]] = []  # (staged partition or None to remove, final)
    moves: list[tuple[Path, Path]] = []  # quarantined-row files: work folder -> quarantine/rows
    committed = False
    try:
        digests = []
        for path in list(files):
            try:
                digest = _sha256_regular(path)
            except _Refused as ref:  # swapped for a link or a special file since it was listed
                refused.append((path, ref.reason))
                files.remove(path)
                continue
            if path.stat().st_size == 0:  # every empty file is reported, once per name
                digest = f"{digest}:{path.name}"
            digests.append(digest)
        for path, why in refused:
            summary.files.append(
                FileResult(
                    file=path.name, kind="partner" if _is_partner(path) else "manifest", status="refused", reason=why
                )
            )
        summary.files_refused = len(refused)
        summary.files_seen = len(files) + len(refused)
        fresh = {d for d in digests if d not in seen}
        new_manifests = [
            p for p, d in zip(files, digests, strict=True) if d in fresh and not _is_partner(p) and p.stat().st_size
        ]
        contested = _contested_ids(layout, new_manifests, workdir) if len(new_manifests) > 1 else None
        for i, (path, digest) in enumerate(zip(files, digests, strict=True)):
            kind = "partner" if _is_partner(path) else "manifest"
            result = FileResult(file=path.name, kind=kind, status="ingested", sha256=digest)
            summary.files.append(result)
            if digest in seen:
                result.status = "skipped"
                summary.files_skipped += 1
            else:
                seen.add(digest)
                stage = workdir / f"{i:05d}-{kind}.parquet"
                qpath = workdir / f"{run_id}-{digest[:12]}.parquet"  # moved to quarantine/rows by the journal
                try:
                    n_valid, n_bad, views = _stage_file(
                        path,
                        kind,
                        workdir,
                        stage,
                        qpath,
                        countries,
                        fx,
                        ingested_at,
                        run_id,
                        contested if kind == "manifest" else None,
                    )
                except _FileRejected as rej:
                    result.status, result.reason = "quarantined", rej.reason
                    summary.files_quarantined += 1
                    reasons[f"file:{rej.reason}"] += 1
                    _quarantine_file(layout, path, digest, kind, rej.reason, rej.detail, run_id)
                else:
                    result.rows_in, result.rows_valid, result.rows_quarantined = n_valid + n_bad, n_valid, n_bad
                    summary.files_ingested += 1
                    summary.rows_in += n_valid + n_bad
                    summary.rows_quarantined += n_bad
                    if kind == "partner":
                        summary.partner_rows_in += n_valid + n_bad
                    if n_bad:
                        reasons.update(_reason_counts(qpath))
                        set_mode(qpath, PRIVATE_FILE)
                        moves.append((qpath, layout.quarantine_rows / qpath.name))
                    staged[kind].extend(views)
                    valid_total += n_valid
                ledger_records.append(
                    {
                        "sha256": digest,
                        "file": path.name,
                        "kind": kind,
                        "status": result.status,
                        "run_id": run_id,
                        "at": ingested_at.isoformat(),
                    }
                )
            if progress:
                progress(i + 1, total_steps)

        if staged["manifest"]:
            ingested, replaced, days = _merge_shipments(layout, staged["manifest"], swaps)
            summary.rows_ingested += ingested
            summary.rows_replaced_existing += replaced
            summary.days_written = days
        if staged["partner"]:
            p_ingested = _merge_partner(layout, staged["partner"], swaps)
            summary.rows_ingested += p_ingested
            summary.partner_rows_ingested = p_ingested
        summary.rows_amended = valid_total - summary.rows_ingested
        summary.quarantine_reasons = dict(sorted(reasons.items()))
        summary.check()
        summary.seconds = round(time.perf_counter() - started, 3)
        run_record = summary.as_dict()
        run_record["files"] = [asdict(f) for f in summary.files]
        # the partitions, quarantined rows, ledger and run log change together (or not at all)
        plan = journal_plan(
            layout.home,
            swaps,
            moves,
            [
                (ledger_path(layout), _jsonl(ledger_records)),
                (runs_path(layout), _jsonl([{"kind": "ingest", **run_record}])),
            ],
        )
        commit_journal(layout.home, layout.raw_journal, plan)
        committed = True
    finally:
        # failed after writing the journal: it names the staged folders and work files, and the
        # next run (or reader) rolls it forward; failed before: nothing of this run is kept
        if not layout.raw_journal.exists():
            if not committed:
                for staged_dir, _final in swaps:
                    if staged_dir is not None:
                        shutil.rmtree(staged_dir, ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
    if progress:
        progress(total_steps, total_steps)
    return summary
