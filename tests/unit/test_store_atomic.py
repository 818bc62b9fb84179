"""``riskpipe.store.write_atomic``: any format written through a temporary sibling and renamed."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from riskpipe.store import PRIVATE_FILE, write_atomic


def test_a_csv_is_written_whole_with_its_mode_and_no_temporary_left(tmp_path: Path) -> None:
    frame = pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    path = write_atomic(tmp_path / "sub" / "day.csv", frame.write_csv, mode=PRIVATE_FILE)
    assert path.read_text(encoding="utf-8") == "a,b\n1,x\n2,y\n"
    assert path.stat().st_mode & 0o777 == PRIVATE_FILE
    assert sorted(p.name for p in path.parent.iterdir()) == ["day.csv"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "day.csv"
    path.write_text("old\n", encoding="utf-8")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half", encoding="utf-8")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_then_fail)
    assert path.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.csv"]
