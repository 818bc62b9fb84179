from __future__ import annotations

import threading
import time
from datetime import date

import polars as pl

from riskpipe.config import Settings
from riskpipe.store import Layout, write_parquet_atomic
from riskpipe.web import days as days_mod
from riskpipe.web.data import WorkbenchData
from riskpipe.web.days import SingleFlightLRU
from riskpipe.web.lists import ROW, first_in_order


def test_concurrent_misses_compute_once_and_share_the_value():
    cache = SingleFlightLRU(4)
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.05)
        return "v"

    out = []
    threads = [threading.Thread(target=lambda: out.append(cache.get_or_compute("k", compute))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == ["v"] * 8
    assert len(calls) == 1


def test_least_recently_used_is_evicted_and_none_is_not_cached():
    cache = SingleFlightLRU(2)
    calls: list[str] = []

    def make(key):
        return lambda: calls.append(key) or key

    cache.get_or_compute("a", make("a"))
    cache.get_or_compute("b", make("b"))
    cache.get_or_compute("a", make("a"))  # hit: a is now most recent
    cache.get_or_compute("c", make("c"))  # evicts b
    cache.get_or_compute("b", make("b"))
    assert calls == ["a", "b", "c", "b"]
    assert cache.get_or_compute("n", lambda: None) is None
    assert cache.get_or_compute("n", lambda: "later") == "later"


def _order(sub: pl.DataFrame, by: str, desc: bool, need: int) -> list[int]:
    return sub.sort([by, ROW], descending=[desc, False], nulls_last=True).head(need).get_column(ROW).to_list()


def test_first_in_order_matches_the_full_sort_with_ties_and_nulls():
    sub = pl.DataFrame(
        {"v": [0.5, None, 0.9, 0.5, 0.1, 0.9, None, 0.5], ROW: list(range(8))}, schema={"v": pl.Float64, ROW: pl.UInt32}
    )
    assert first_in_order(sub, "v", True, 3).to_list() == [2, 5, 0]  # ties at the cut-off: row order
    assert first_in_order(sub, "v", False, 2).to_list() == [4, 0]
    assert first_in_order(sub, "v", False, 8).to_list() == [4, 0, 3, 7, 2, 5, 1, 6]  # nulls last
    assert first_in_order(sub, "v", True, 7).to_list() == [2, 5, 0, 3, 7, 4, 1]
    s = pl.DataFrame({"v": ["b", "a", None, "c"], ROW: [0, 1, 2, 3]}, schema={"v": pl.String, ROW: pl.UInt32})
    assert first_in_order(s, "v", False, 4).to_list() == [1, 0, 3, 2]


def test_first_in_order_with_too_many_ties_falls_back_exactly():
    n = 70_000  # more tied rows at the cut-off than the candidate limit
    sub = pl.DataFrame(
        {"v": [1.0] * (n - 3) + [2.0, None, 3.0], ROW: list(range(n))}, schema={"v": pl.Float64, ROW: pl.UInt32}
    )
    for desc in (True, False):
        assert first_in_order(sub, "v", desc, 5).to_list() == _order(sub, "v", desc, 5)
    assert first_in_order(sub, "v", True, 4).to_list() == [n - 1, n - 3, 0, 1]


def test_published_days_listing_is_reused_until_a_day_is_added(tmp_path, monkeypatch):
    monkeypatch.setattr(days_mod, "DAYS_SETTLE_NS", 0)  # no coarse-clock grace in the test
    home = tmp_path / "home"
    settings = Settings(home=home)
    data = WorkbenchData(settings, reason_texts={})
    layout = Layout(home)
    frame = pl.DataFrame({"x": [1]})
    write_parquet_atomic(frame, layout.day_dir(layout.scores, date(2026, 1, 2)) / "scores.parquet")
    assert data.days() == [date(2026, 1, 2)]
    assert data._published is not None  # cached
    # a publish in progress: the day directory exists, its file not yet
    layout.day_dir(layout.targets, date(2026, 1, 3)).mkdir(parents=True)
    assert data.days() == [date(2026, 1, 2)] and data._published is None  # not cached while pending
    write_parquet_atomic(frame, layout.day_dir(layout.targets, date(2026, 1, 3)) / "targets.parquet")
    assert data.days() == [date(2026, 1, 3), date(2026, 1, 2)]
    write_parquet_atomic(frame, layout.day_dir(layout.scores, date(2026, 1, 4)) / "scores.parquet")
    assert data.days() == [date(2026, 1, 4), date(2026, 1, 3), date(2026, 1, 2)]
