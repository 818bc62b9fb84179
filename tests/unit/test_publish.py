from __future__ import annotations

import json
from datetime import date

from crash_child import CRASH, CRASH_AT_KTH_REPLACE

from riskpipe import publish
from riskpipe.store import Layout

DAY = date(2026, 1, 5)


def _write_run(layout: Layout, tag: str) -> publish.Staged:
    staged = publish.stage(layout, DAY)
    for kind in publish.OUTPUT_KINDS:
        (staged[kind] / f"{kind}.txt").write_text(tag)
    return staged


def _visible(layout: Layout) -> dict[str, str]:
    out = {}
    for kind in publish.OUTPUT_KINDS:
        f = layout.day_dir(getattr(layout, kind), DAY) / f"{kind}.txt"
        out[kind] = f.read_text() if f.exists() else None
    return out


def test_commit_publishes_all_outputs_and_replaces_previous(tmp_path):
    layout = Layout(tmp_path)
    publish.commit(layout, _write_run(layout, "run1"))
    assert _visible(layout) == {"scores": "run1", "targets": "run1", "reports": "run1"}
    publish.commit(layout, _write_run(layout, "run2"))
    assert _visible(layout) == {"scores": "run2", "targets": "run2", "reports": "run2"}
    hidden = [p.name for p in (tmp_path / "scores").iterdir() if p.name.startswith(".")]
    assert hidden == []


def test_run_killed_before_commit_leaves_previous_outputs_and_is_swept(tmp_path):
    layout = Layout(tmp_path)
    publish.commit(layout, _write_run(layout, "run1"))
    _write_run(layout, "killed")  # staged, never committed (process died)
    assert _visible(layout) == {"scores": "run1", "targets": "run1", "reports": "run1"}
    assert publish.sweep_stale(layout, DAY) == 3
    assert [p.name for p in (tmp_path / "targets").iterdir()] == [DAY.isoformat()]


def test_run_killed_mid_swap_is_rolled_forward(tmp_path):
    layout = Layout(tmp_path)
    publish.commit(layout, _write_run(layout, "run1"))
    staged = _write_run(layout, "run2")
    # simulate a crash after the journal and the first swap only
    plan = {k: [str(staged[k]), str(layout.day_dir(getattr(layout, k), DAY))] for k in publish.OUTPUT_KINDS}
    journal = tmp_path / ".publish" / f"{DAY.isoformat()}.json"
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text(json.dumps(plan))
    from riskpipe.store import replace_dir_atomic

    replace_dir_atomic(staged["scores"], layout.day_dir(layout.scores, DAY))
    assert _visible(layout)["scores"] == "run2" and _visible(layout)["targets"] == "run1"
    assert publish.recover(layout, DAY) is True
    assert _visible(layout) == {"scores": "run2", "targets": "run2", "reports": "run2"}
    assert not journal.exists()


# --- crashes between the journal and the swaps, seen by readers (real kills: a child process) ---
COMMIT_CHILD = (
    CRASH_AT_KTH_REPLACE
    + """
from riskpipe import publish
from riskpipe.store import Layout
staged = publish.Staged(date.fromisoformat(sys.argv[3]), {k: Path(v) for k, v in json.loads(sys.argv[4]).items()})
publish.commit(Layout(Path(sys.argv[1])), staged)
"""
)


def _publish_frames(layout: Layout, day: date, tag: str, kill_at: int | None = None) -> None:
    """Publish targets and scores of three shipments named after ``tag`` (and a report); with
    ``kill_at``, the committing process dies at its ``kill_at``-th rename."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import polars as pl

    from riskpipe import schema as S

    staged = publish.stage(layout, day)
    ids = [f"{tag}-{i}" for i in range(3)]
    pl.DataFrame(
        {
            S.SHIPMENT_ID: ids,
            S.RISK_SCORE: [0.9, 0.5, 0.1],
            S.RULE_SCORE: [0.0] * 3,
            S.REASONS: [["r:x"]] * 3,
            S.MODEL_VERSION: [tag] * 3,
        }
    ).write_parquet(staged["scores"] / "scores.parquet")
    pl.DataFrame(
        {
            S.RANK: [1, 2],
            S.SHIPMENT_ID: ids[:2],
            S.RISK_SCORE: [0.9, 0.5],
            S.SELECTION: ["risk"] * 2,
            S.REASONS: [["r:x"]] * 2,
        }
    ).write_parquet(staged["targets"] / "targets.parquet")
    (staged["reports"] / "report.html").write_text(tag)
    if kill_at is None:
        publish.commit(layout, staged)
        return
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    dirs = json.dumps({k: str(v) for k, v in staged.dirs.items()})
    done = subprocess.run(
        [sys.executable, "-c", COMMIT_CHILD, str(layout.home), str(kill_at), day.isoformat(), dirs],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == CRASH, done.stderr[-2000:]


def test_workbench_never_shows_a_mixture_after_a_kill_between_journal_and_swaps(tmp_path):
    """Killed right after the journal (call 2: before any swap) and after the first swap (call 4):
    the workbench shows the new night complete, not old targets with missing scores."""
    from riskpipe.config import Settings
    from riskpipe.web.data import WorkbenchData
    from riskpipe.web.lists import ListQuery

    for kill_at in (2, 4):
        layout = Layout(tmp_path / f"k{kill_at}")
        _publish_frames(layout, DAY, "old")
        _publish_frames(layout, DAY, "new", kill_at=kill_at)
        data = WorkbenchData(Settings(home=layout.home), reason_texts={})
        assert data.days() == [DAY]
        listed = data.list_page(DAY, ListQuery(view="targets"))
        assert [r["shipment_id"] for r in listed.rows] == ["new-0", "new-1"]
        assert data.score(DAY, "new-2")["model_version"] == "new"
        assert data.score(DAY, "old-0") is None
        assert data.report_path(DAY).read_text() == "new"
        assert not (layout.home / ".publish" / f"{DAY.isoformat()}.json").exists()


def test_a_first_publication_killed_after_its_journal_is_listed_complete(tmp_path):
    from riskpipe.config import Settings
    from riskpipe.web.data import WorkbenchData

    layout = Layout(tmp_path)
    _publish_frames(layout, DAY, "first", kill_at=2)  # nothing swapped in yet
    data = WorkbenchData(Settings(home=layout.home), reason_texts={})
    assert data.days() == [DAY]
    assert pl_ids(layout, DAY) == ["first-0", "first-1", "first-2"]


def test_publishing_one_day_recovers_every_day_and_sweeps_what_killed_runs_left(tmp_path):
    import os
    import time
    from datetime import timedelta

    layout = Layout(tmp_path)
    d_pending, d_aside, d_stale, d_live, today = (DAY + timedelta(days=i) for i in range(5))
    _publish_frames(layout, d_pending, "old")
    _publish_frames(layout, d_pending, "new", kill_at=3)  # journal written, scores moved aside
    aside = layout.targets / f".{d_aside.isoformat()}.old-deadbeef"
    stale = layout.scores / f".{d_stale.isoformat()}.staging-deadbeef"
    live = layout.scores / f".{d_live.isoformat()}.staging-cafecafe"  # a run of another day, in progress
    for p in (aside, stale, live):
        p.mkdir(parents=True)
        (p / "x").write_text("x")
    old = time.time() - publish.STALE_STAGING_S - 60
    os.utime(stale, (old, old))
    publish.commit(layout, publish.stage(layout, today))  # tonight's publication
    assert pl_ids(layout, d_pending) == ["new-0", "new-1", "new-2"]
    assert not aside.exists() and not stale.exists()
    assert live.exists()
    assert not list((layout.home / ".publish").glob("*.json"))
    for kind in publish.OUTPUT_KINDS:  # no hidden leftover of the pending day either
        assert not [p for p in getattr(layout, kind).glob(f".{d_pending.isoformat()}*")]


def pl_ids(layout: Layout, day: date) -> list[str]:
    import polars as pl

    return sorted(pl.read_parquet(layout.day_dir(layout.scores, day) / "scores.parquet")["shipment_id"].to_list())


def test_a_journal_naming_a_path_outside_the_home_is_refused(tmp_path):
    import pytest

    from riskpipe.errors import RiskpipeError

    layout = Layout(tmp_path / "home")
    victim = tmp_path / "victim"
    victim.mkdir()
    journal = layout.home / ".publish" / f"{DAY.isoformat()}.json"
    journal.parent.mkdir(parents=True)
    journal.write_text(json.dumps({"version": 2, "swaps": [["../victim", "scores/2026-01-05"]]}))
    with pytest.raises(RiskpipeError, match="not a path inside the data home"):
        publish.ensure_complete(layout, DAY)
    assert victim.exists()


def test_an_error_inside_commit_keeps_what_the_journal_needs(tmp_path, monkeypatch):
    """An exception (not a crash) between the two renames of a swap, then the caller abandons
    the run as the nightly flow does: the next reader still completes the new night."""
    import os

    import pytest

    layout = Layout(tmp_path)
    publish.commit(layout, _write_run(layout, "run1"))
    staged = _write_run(layout, "run2")
    real, calls = os.replace, [0]

    def failing(src, dst, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:  # journal, scores aside, then the staged scores in: fails
            raise OSError("disk said no")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk said no"):
        publish.commit(layout, staged)
    monkeypatch.setattr(os, "replace", real)
    publish.abandon(staged)
    publish.ensure_complete(layout, DAY)
    assert _visible(layout) == {"scores": "run2", "targets": "run2", "reports": "run2"}
