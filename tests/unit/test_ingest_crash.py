"""Ingest survives a crash at any rename: each partition is the old or the new one at every
instant, the next run (or any reader of the raw store) rolls an interrupted run forward, every
row of every file ends up stored exactly once and counted exactly once, and crash leftovers are
swept. Crashes are real: a child process whose ``os.replace`` calls ``os._exit`` at its k-th
call (no ``finally`` block runs, as with kill -9)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from crash_child import CRASH, CRASH_AT_KTH_REPLACE
from manifest_rows import manifest_row, write_csv

from riskpipe import schema as S
from riskpipe.ingest import ingest_paths, ledger_path, read_runs
from riskpipe.store import Layout, scan_raw_partner, scan_raw_shipments

ROOT = Path(__file__).resolve().parents[2]
CHILD = (
    CRASH_AT_KTH_REPLACE
    + """
from riskpipe.ingest import ingest_paths
from riskpipe.store import Layout
ingest_paths(Layout(Path(sys.argv[1])))
"""
)


def _partner(sid: str, declared: str, value: str) -> dict[str, str]:
    return {
        S.SHIPMENT_ID: sid,
        S.EXPORT_COUNTRY: "MX",
        S.EXPORTER_NAME: "Exp",
        S.EXPORTER_AEO: "false",
        S.PARTNER_DECLARED_VALUE_USD: value,
        S.GROSS_WEIGHT_KG: "1",
        S.DESCRIPTION: "shirts",
        S.DECLARED_AT: declared,
    }


def _first_files(landing: Path) -> None:
    """Two days of manifests and one day of partner declarations."""
    rows = [manifest_row(f"A{i:02d}", "2026-01-05", "2026-01-04T08:00:00Z") for i in range(12)]
    rows += [manifest_row(f"B{i:02d}", "2026-01-06", "2026-01-05T08:00:00Z") for i in range(12)]
    write_csv(landing / "m1.csv", rows)
    write_csv(landing / "partner-exports-1.csv", [_partner(f"A{i:02d}", "2026-01-03T10:00:00Z", "9") for i in range(4)])


def _second_files(landing: Path) -> None:
    """Amendments (one moving a shipment to another day), new rows on an existing and a new
    day, one bad row; partner amendments on the existing day and rows on a new one."""
    rows = [
        manifest_row("A00", "2026-01-05", "2026-01-04T09:00:00Z", "11"),  # amends in place
        manifest_row("A01", "2026-01-07", "2026-01-04T09:00:00Z", "12"),  # moves to a new day
        manifest_row("B00", "2026-01-06", "2026-01-05T09:00:00Z", "13"),
    ]
    rows += [manifest_row(f"C{i:02d}", "2026-01-06", "2026-01-05T08:00:00Z") for i in range(8)]
    rows += [manifest_row(f"D{i:02d}", "2026-01-07", "2026-01-06T08:00:00Z") for i in range(8)]
    rows += [manifest_row("BAD", "2026-01-07", "2026-01-06T08:00:00Z", "not-a-number")]
    write_csv(landing / "m2.csv", rows)
    write_csv(
        landing / "partner-exports-2.csv",
        [_partner("A00", "2026-01-03T11:00:00Z", "19"), _partner("D00", "2026-01-05T10:00:00Z", "7")],
    )


def _content(layout: Layout) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """The stored rows without what differs between runs (ingest time), superseded filings too."""
    manifests = scan_raw_shipments(layout).collect().drop(S.INGESTED_AT).sort(S.SHIPMENT_ID)
    partner = scan_raw_partner(layout).collect().drop(S.INGESTED_AT).sort(S.SHIPMENT_ID, S.DECLARED_AT)
    old = sorted(layout.raw_superseded.glob("arrival_date=*/*.parquet"))
    superseded = (
        pl.read_parquet(old).drop(S.INGESTED_AT, S.SUPERSEDED_BY_INGESTED_AT).sort(S.SHIPMENT_ID, S.FILED_AT)
        if old
        else pl.DataFrame()
    )
    return manifests, partner, superseded


def _leftovers(layout: Layout) -> list[str]:
    found = []
    for base in (
        layout.raw_shipments,
        layout.raw_superseded,
        layout.raw_partner,
        layout.home / "ingest",
        layout.quarantine_rows,
    ):
        found += [p.name for p in base.glob(".*")] if base.exists() else []
    return found


@pytest.fixture(scope="module")
def homes(tmp_path_factory) -> dict:
    """A home holding the first files, and the reference result of ingesting the second ones."""
    base = tmp_path_factory.mktemp("crash")
    first = Layout(base / "first")
    _first_files(first.landing)
    ingest_paths(first)
    reference = Layout(base / "reference")
    shutil.copytree(first.home, reference.home)
    _second_files(reference.landing)
    summary = ingest_paths(reference)
    assert summary.rows_quarantined == 1
    return {"first": first, "reference": reference, "content": _content(reference), "base": base}


def _count_replaces(homes: dict, monkeypatch: pytest.MonkeyPatch) -> int:
    layout = Layout(homes["base"] / "count")
    shutil.rmtree(layout.home, ignore_errors=True)
    shutil.copytree(homes["first"].home, layout.home)
    _second_files(layout.landing)
    calls = [0]
    real = os.replace

    def counting(src, dst, *args, **kwargs):
        calls[0] += 1
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", counting)
    ingest_paths(layout)
    monkeypatch.setattr(os, "replace", real)
    return calls[0]


def _crash_child(home: Path, k: int) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(home), str(k)], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode in (0, CRASH), done.stderr[-3000:]
    return done.returncode


def _assert_complete(layout: Layout, homes: dict) -> None:
    """Every row of both files stored once, each counted by exactly one run, nothing left over."""
    manifests, partner, superseded = _content(layout)
    ref_manifests, ref_partner, ref_superseded = homes["content"]
    assert manifests.equals(ref_manifests), "stored manifests differ from an uninterrupted ingest"
    assert superseded.height == 3 and superseded.equals(ref_superseded), "superseded filings differ"
    assert partner.equals(ref_partner), "stored partner rows differ from an uninterrupted ingest"
    runs = read_runs(layout)
    for run in runs:
        assert run["rows_in"] == run["rows_ingested"] + run["rows_amended"] + run["rows_quarantined"]
    ref_runs = read_runs(homes["reference"])
    for key in ("rows_in", "rows_quarantined", "partner_rows_in"):
        assert sum(r[key] for r in runs) == sum(r[key] for r in ref_runs), key  # counted once
    applied = [f["file"] for r in runs for f in r["files"] if f["status"] != "skipped"]
    assert sorted(applied) == sorted(["m1.csv", "m2.csv", "partner-exports-1.csv", "partner-exports-2.csv"])
    ledger = [json.loads(x) for x in ledger_path(layout).read_text().splitlines()]
    assert sorted(r["file"] for r in ledger) == sorted(applied)  # each file recorded once
    q_rows = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in layout.quarantine_rows.glob("*.parquet"))
    assert q_rows == sum(r["rows_quarantined"] for r in runs) == 1
    assert _leftovers(layout) == []
    assert not (layout.home / "ingest" / "journal.json").exists()


def test_a_crash_at_every_rename_loses_nothing_and_the_next_run_completes(homes, monkeypatch) -> None:
    n = _count_replaces(homes, monkeypatch)
    assert n >= 8  # staging moves, atomic writes, the partition swaps and the journal
    for k in range(1, n + 1):
        layout = Layout(homes["base"] / f"k{k}")
        shutil.copytree(homes["first"].home, layout.home)
        _second_files(layout.landing)
        assert _crash_child(layout.home, k) == CRASH, f"no crash at os.replace call {k} of {n}"
        if k % 2:  # a reader first (it must never miss a day), else straight to the next run
            days = set(layout.raw_days())
            assert {date(2026, 1, 5), date(2026, 1, 6)} <= days, f"crash at call {k}: a day vanished"
        ingest_paths(layout)
        _assert_complete(layout, homes)
        shutil.rmtree(layout.home)


def test_a_crash_while_rolling_forward_is_rolled_forward_again(homes) -> None:
    """Crash after the journal (the last swap), then crash the recovering run at its first
    rename too: the third run still completes the interrupted one exactly once."""
    layout = Layout(homes["base"] / "twice")
    shutil.copytree(homes["first"].home, layout.home)
    _second_files(layout.landing)
    journal = layout.home / "ingest" / "journal.json"
    for k in range(1, 200):  # the first call after which a journal exists
        probe = Layout(homes["base"] / "probe")
        shutil.copytree(layout.home, probe.home)
        crashed = _crash_child(probe.home, k) == CRASH
        pending = journal.relative_to(layout.home)
        if not crashed or (probe.home / pending).exists():
            break
        shutil.rmtree(probe.home)
    assert crashed and (probe.home / pending).exists()
    assert _crash_child(probe.home, 2) == CRASH  # the recovering run dies mid roll-forward
    ingest_paths(probe)
    _assert_complete(probe, homes)


def test_readers_roll_an_interrupted_ingest_forward(homes, monkeypatch) -> None:
    """A reader of the raw store (not only the next ingest) sees the complete new state."""
    n = _count_replaces(homes, monkeypatch)
    layout = Layout(homes["base"] / "reader")
    shutil.copytree(homes["first"].home, layout.home)
    _second_files(layout.landing)
    assert _crash_child(layout.home, n - 1) == CRASH  # the journal is written by then
    manifests, partner, superseded = _content(layout)
    assert manifests.equals(homes["content"][0]) and partner.equals(homes["content"][1])
    assert superseded.equals(homes["content"][2])


def test_stale_staging_and_aside_folders_are_swept_by_the_next_ingest(homes) -> None:
    layout = Layout(homes["base"] / "sweep")
    shutil.copytree(homes["first"].home, layout.home)
    final = layout.raw_shipments_day(date(2026, 1, 5))
    leftovers = [
        final.with_name(f".{final.name}.staging-deadbeef"),
        final.with_name(f".{final.name}.old-deadbeef"),
        layout.raw_partner / ".declared_date=2026-01-03.staging-deadbeef",
        layout.raw_superseded / ".arrival_date=2026-01-05.staging-deadbeef",
        layout.home / "ingest" / ".run-20260101T000000-abcdef",
    ]
    for p in leftovers:
        p.mkdir(parents=True)
        (p / "part-0.parquet").write_bytes(b"junk")
    labels_work = layout.home / "ingest" / ".run-labels-20260101T000000-abcdef"  # not ingest's to sweep
    labels_work.mkdir()
    before = _content(layout)
    ingest_paths(layout)
    assert [p for p in leftovers if p.exists()] == []
    assert labels_work.exists()
    after = _content(layout)
    assert after[0].equals(before[0]) and after[1].equals(before[1])


def test_an_error_while_applying_the_journal_is_completed_by_the_next_run(homes, monkeypatch) -> None:
    """An exception (not a crash) between the two renames of a partition swap: the failed run
    keeps what its journal names, and the next run completes it."""
    layout = Layout(homes["base"] / "error")
    shutil.copytree(homes["first"].home, layout.home)
    _second_files(layout.landing)
    real, calls = os.replace, [0]

    def failing(src, dst, *args, **kwargs):
        calls[0] += 1
        if ".staging-" in str(src) and Path(dst).name.startswith("arrival_date="):
            raise OSError("disk said no")  # the first staged partition's rename into place
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk said no"):
        ingest_paths(layout)
    monkeypatch.setattr(os, "replace", real)
    ingest_paths(layout)
    _assert_complete(layout, homes)
