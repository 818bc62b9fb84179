"""What the night still has to ingest (:func:`riskpipe.landed.unhandled_landing`)."""

from __future__ import annotations

import json
import os

from riskpipe.landed import unhandled_landing
from riskpipe.store import Layout
from riskpipe.watch import watch_state_path


def _record(layout: Layout, names: list[str]) -> None:
    state = {}
    for n in names:
        st = (layout.landing / n).stat()
        state[n] = [st.st_size, st.st_mtime_ns]
    watch_state_path(layout).parent.mkdir(parents=True, exist_ok=True)
    watch_state_path(layout).write_text(json.dumps(state), encoding="utf-8")


def test_files_the_watcher_handled_unchanged_are_left_out(tmp_path):
    layout = Layout(tmp_path)
    layout.landing.mkdir(parents=True)
    for n in ("a.csv", "b.parquet", "c.ndjson", ".upload.csv"):
        (layout.landing / n).write_text(n, encoding="utf-8")
    (layout.landing / "outcomes").mkdir()
    assert unhandled_landing(layout) is None  # no watcher: the whole folder, as before
    _record(layout, ["a.csv", "b.parquet"])
    assert unhandled_landing(layout) == [str(layout.landing / "c.ndjson")]
    _record(layout, ["a.csv", "b.parquet", "c.ndjson"])
    assert unhandled_landing(layout) == []
    (layout.landing / "b.parquet").write_text("b, rewritten", encoding="utf-8")  # size changed
    assert unhandled_landing(layout) == [str(layout.landing / "b.parquet")]


def test_a_link_in_the_landing_folder_means_the_whole_folder(tmp_path):
    """So the ingest refuses and reports it, as ``riskpipe ingest`` does."""
    layout = Layout(tmp_path)
    layout.landing.mkdir(parents=True)
    (layout.landing / "a.csv").write_text("a", encoding="utf-8")
    _record(layout, ["a.csv"])
    os.symlink(tmp_path / "elsewhere", layout.landing / "link.csv")
    assert unhandled_landing(layout) is None
