"""The landing watcher (riskpipe.watch): a file is read only once settled, with the same counts
as ``riskpipe ingest``, once; a poll skips while another ingest runs; provisional scores are
written apart and replaced by the night's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.ingest import ingest_paths
from riskpipe.provisional import provisional_days, provisional_path, provisional_score, read_provisional
from riskpipe.store import Layout, file_lock, scan_raw_shipments
from riskpipe.watch import Watcher, watch_state_path

DAY = date(2026, 1, 5)


def _row(sid: str, **over: str) -> dict[str, str]:
    base = {
        S.SHIPMENT_ID: sid,
        S.FILED_AT: "2026-01-05T08:00:00Z",
        S.ARRIVAL_DATE: DAY.isoformat(),
        S.ENTRY_TYPE: "321",
        S.MODE: "express",
        S.CARRIER_CODE: "DHL",
        S.PORT_OF_ENTRY: "0401",
        S.SHIPPER_NAME: "Acme Ltd",
        S.SHIPPER_ADDRESS: "1 Road",
        S.SHIPPER_COUNTRY: "cn",
        S.CONSIGNEE_NAME: "J Doe",
        S.CONSIGNEE_ADDRESS: "12 Main Street",
        S.CONSIGNEE_CITY: "Springfield",
        S.CONSIGNEE_STATE: "oh",
        S.CONSIGNEE_POSTAL_CODE: "04501",
        S.DESCRIPTION: "t-shirt",
        S.COUNTRY_OF_ORIGIN: "CN",
        S.DECLARED_VALUE: "100",
        S.CURRENCY: "cny",
        S.GROSS_WEIGHT_KG: "0.5",
        S.PIECE_COUNT: "2",
        S.HTS_CODE: "6109.10.0012",
    }
    return base | over


def _write(path: Path, *ids: str, bad: str | None = None, mtime: float | None = None) -> Path:
    rows = [_row(i) for i in ids] + ([_row(bad, **{S.ARRIVAL_DATE: "not a date"})] if bad else [])
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema={k: pl.String for k in rows[0]}).write_csv(path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def home(tmp_path: Path) -> Layout:
    layout = Layout(tmp_path / "home")
    layout.landing.mkdir(parents=True)
    return layout


def _watcher(layout: Layout, clock: Clock, provisional: bool = False) -> Watcher:
    return Watcher(layout, load_settings(layout.home), settle_s=5, provisional=provisional, clock=clock)


def test_a_file_is_read_only_once_settled_and_uploads_in_progress_never(home: Layout) -> None:
    t = 1_800_000_000.0
    f = _write(home.landing / "m1.csv", "A1", "A2", mtime=t)
    _write(home.landing / ".m2.csv.part", "B1", mtime=t - 100)  # an upload in progress
    _write(home.landing / "_m3.csv", "C1", mtime=t - 100)
    clock = Clock(t + 1)
    w = _watcher(home, clock)
    first = w.poll()  # modified a second ago: may still be written
    assert (first.waiting, first.ingest) == (["m1.csv"], None)
    _write(f, "A1", "A2", "A3", mtime=t)  # still growing (same mtime, larger: seen changed)
    clock.now = t + 20
    second = w.poll()
    assert (second.waiting, second.ingest) == (["m1.csv"], None)
    third = w.poll()  # unchanged since the last look and old enough
    assert third.ingest is not None and third.ingest["files_ingested"] == 1 and third.waiting == []
    assert sorted(scan_raw_shipments(home).collect()[S.SHIPMENT_ID]) == ["A1", "A2", "A3"]


def test_same_counts_as_ingest_once_and_quarantine(home: Layout, tmp_path: Path) -> None:
    t = 1_800_000_000.0
    _write(home.landing / "m1.csv", "A1", "A2", bad="X9", mtime=t)
    twin = Layout(tmp_path / "twin")
    _write(twin.landing / "m1.csv", "A1", "A2", bad="X9", mtime=t)
    expected = ingest_paths(twin).as_dict()
    clock = Clock(t + 60)
    got = _watcher(home, clock).poll().ingest
    assert got is not None
    for k in ("files_ingested", "rows_in", "rows_ingested", "rows_quarantined", "quarantine_reasons", "days_written"):
        assert got[k] == expected[k], k
    assert got["rows_quarantined"] == 1 and len(list(home.quarantine_rows.glob("*.parquet"))) == 1
    # the next poll, and a watcher started afresh, hash nothing again
    assert _watcher(home, clock).poll().ingest is None
    watch_state_path(home).unlink()  # state lost: the ledger still makes it a no-op
    again = _watcher(home, clock).poll().ingest
    assert again is not None and (again["files_skipped"], again["rows_ingested"]) == (1, 0)


def test_a_poll_skips_its_turn_while_another_ingest_runs(home: Layout) -> None:
    t = 1_800_000_000.0
    _write(home.landing / "m1.csv", "A1", mtime=t)
    w = _watcher(home, Clock(t + 60))
    with file_lock(home.ingest_lock) as held:
        assert held
        busy = w.poll()
    assert busy.busy and busy.ingest is None and not home.raw_shipments.exists()
    after = w.poll()
    assert not after.busy and after.ingest is not None and after.ingest["files_ingested"] == 1


def test_provisional_scores_are_written_apart_and_replaced_by_the_night(home: Layout) -> None:
    t = 1_800_000_000.0
    _write(home.landing / "m1.csv", "A1", "A2", mtime=t)
    w = _watcher(home, Clock(t + 60), provisional=True)
    result = w.poll()
    assert result.errors == []
    assert [r.day for r in result.provisional] == [DAY] and set(result.latency_s) == {"m1.csv"}
    prov = read_provisional(home, DAY)
    assert prov is not None and sorted(prov[S.SHIPMENT_ID]) == ["A1", "A2"]
    assert prov.columns == [*S.SCORES_FILE_SCHEMA, "provisional"] and prov["provisional"].all()
    assert not (home.scores / DAY.isoformat()).exists()  # never among the published outputs
    one = provisional_score(home, DAY, "A2")
    assert (
        one is not None
        and one["provisional"] is True
        and one[S.RISK_SCORE] == prov.filter(pl.col(S.SHIPMENT_ID) == "A2")[S.RISK_SCORE].item()
    )
    assert provisional_days(home) == [DAY] and provisional_score(home, DAY, "nope") is None
    # the night publishes the day: its scores replace the provisional ones, the next poll sweeps
    night = home.scores / DAY.isoformat() / "scores.parquet"
    night.parent.mkdir(parents=True)
    prov.drop("provisional").write_parquet(night)
    assert read_provisional(home, DAY) is None and provisional_score(home, DAY, "A2") is None
    assert provisional_days(home) == []
    swept = w.poll()
    assert swept.replaced == [DAY] and not provisional_path(home, DAY).parent.exists()


def test_ctrl_c_stops_the_watch_command_cleanly(home: Layout) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "riskpipe.cli", "--home", str(home.home), "watch", "--interval", "0.2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once the loop is about to start
        assert "watching" in first, first
        time.sleep(0.5)  # a few polls
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped" in out and "Traceback" not in out
