from __future__ import annotations

import json
from datetime import date

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
