"""Pre-flight checks of ``riskpipe nightly`` and ``riskpipe retrain``: a call that cannot
succeed fails with one line in about a second, before Prefect starts (no Prefect database is
created in the home), instead of after Prefect's 7-14 s start and 80 lines of traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from riskpipe.config import load_settings
from riskpipe.errors import RiskpipeError
from riskpipe.preflight import check_home, check_nightly, check_retrain, pending_landing_files
from riskpipe.store import Layout

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 1, 14)


def _cli(home: Path, *args: str) -> tuple[int, list[str], float]:
    """Run the CLI in a fresh process: (exit status, non-empty output lines, wall seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "RISKPIPE_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    code = "import sys; from riskpipe.cli import main; sys.argv[0] = 'riskpipe'; main()"
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, "--home", str(home), *args],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    wall = time.perf_counter() - t0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return done.returncode, lines, wall


def _ingested(home: Path, day: date) -> None:
    part = Layout(home).raw_shipments_day(day)
    part.mkdir(parents=True)
    pl.DataFrame({"shipment_id": ["a"]}).write_parquet(part / "part-0.parquet")


def test_a_night_for_an_absent_day_fails_in_one_line_before_prefect_starts(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    _ingested(home, DAY)
    code, lines, wall = _cli(home, "nightly", "--date", "2026-03-15")
    assert code != 0
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: nightly 2026-03-15: no ingested manifests for arrival date 2026-03-15")
    assert "raw store has: 2026-01-14..2026-01-14" in lines[0]
    # the guarantee is that Prefect never starts (below); the wall bound is only a sanity check, loose
    # enough for a loaded CI machine (0.7-1.0 s measured here at load 10; it once took 3.2 s at load 22)
    assert wall < 10.0, f"{wall:.1f} s"
    assert not (home / ".prefect").exists()  # Prefect never started: no database, no folder


def test_a_mistyped_home_is_refused_and_not_created(tmp_path):
    code, lines, _ = _cli(tmp_path / "no-such-home", "nightly", "--date", "2026-01-14")
    assert code != 0 and len(lines) == 1
    assert "data home" in lines[0] and "does not exist" in lines[0]
    assert not (tmp_path / "no-such-home").exists()


def test_skip_ingest_needs_the_day_ingested(tmp_path):
    layout = Layout(tmp_path)
    (layout.landing).mkdir()
    (layout.landing / "manifest-new.csv").write_text("shipment_id\nx\n")
    settings = load_settings(tmp_path)
    check_nightly(layout, settings, DAY, ingest=True, allow_rules_only=True)  # the new file may bring it
    with pytest.raises(RiskpipeError, match=r"no ingested manifests for arrival date 2026-01-14.*drop --skip-ingest"):
        check_nightly(layout, settings, DAY, ingest=False, allow_rules_only=True)
    _ingested(tmp_path, DAY)
    check_nightly(layout, settings, DAY, ingest=False, allow_rules_only=True)


def test_landing_files_already_ingested_do_not_count_unless_changed(tmp_path):
    from riskpipe.ingest import ledger_path

    layout = Layout(tmp_path)
    layout.landing.mkdir()
    seen = layout.landing / "manifest-1.csv"
    seen.write_text("shipment_id\nx\n")
    (layout.landing / "partner-exports-1.csv").write_text("shipment_id\nx\n")  # partner data: no manifests
    (layout.landing / ".partial.csv").write_text("x")  # hidden: an upload in progress
    ledger = ledger_path(layout)
    ledger.parent.mkdir(parents=True)
    ledger.write_text('{"sha256": "00", "file": "manifest-1.csv", "status": "ingested"}\n')
    old = time.time() - 60
    os.utime(seen, (old, old))
    assert pending_landing_files(layout) == []
    with pytest.raises(RiskpipeError, match="and no new files in"):
        check_nightly(layout, load_settings(tmp_path), DAY, ingest=True, allow_rules_only=True)
    os.utime(seen, None)  # replaced after the last ingest run
    assert pending_landing_files(layout) == [seen]


def test_a_night_without_a_usable_champion_needs_allow_rules_only(tmp_path):
    layout = Layout(tmp_path)
    _ingested(tmp_path, DAY)
    settings = load_settings(tmp_path)
    with pytest.raises(RiskpipeError, match=r"no champion model has been registered.*--allow-rules-only"):
        check_nightly(layout, settings, DAY, ingest=False, allow_rules_only=False)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "champion.json").write_text("{")
    with pytest.raises(RiskpipeError, match=r"champion is not usable.*--allow-rules-only"):
        check_nightly(layout, settings, DAY, ingest=False, allow_rules_only=False)
    check_nightly(layout, settings, DAY, ingest=False, allow_rules_only=True)


def test_retrain_needs_ingested_days_and_a_usable_or_absent_champion(tmp_path):
    layout = Layout(tmp_path)
    settings = load_settings(tmp_path)
    with pytest.raises(RiskpipeError, match="retrain: no ingested manifests in"):
        check_retrain(layout, settings, None, force=False)
    _ingested(tmp_path, DAY)
    with pytest.raises(RiskpipeError, match="no ingested manifests up to 2026-01-13"):
        check_retrain(layout, settings, date(2026, 1, 13), force=False)
    check_retrain(layout, settings, None, force=False)  # a fresh registry: the first model is promoted
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "champion.json").write_text("{")
    with pytest.raises(RiskpipeError, match="champion is not usable.*--force"):
        check_retrain(layout, settings, None, force=False)
    check_retrain(layout, settings, None, force=True)
    with pytest.raises(RiskpipeError, match="does not exist"):
        check_home(tmp_path / "nope")
