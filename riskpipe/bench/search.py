"""Search latency on a home: seconds per search over its last 90 days (the workbench's search
page answers from :mod:`riskpipe.search`'s per-day identifier indexes)."""

from __future__ import annotations

import time

from riskpipe.search import SEARCH_DAYS, index_path, search, search_days
from riskpipe.store import Layout


def bench_search(
    layout: Layout, queries: list[str] | list[tuple[str, str]], repeat: int = 1, n_days: int = SEARCH_DAYS
) -> dict:
    """Seconds per search (p50, p95, max) over ``queries`` (a text, or (text, kind) to search one
    identifier kind) on the home's last ``n_days`` days, indexes built first (their build time
    reported apart); ``by_kind``: the same figures per identifier kind asked ("any": every kind)."""
    t0 = time.perf_counter()
    days = search_days(layout, n_days=n_days)
    for d in days:
        index_path(layout, d)
    build_s = time.perf_counter() - t0
    times: list[float] = []
    by_kind: dict[str, list[float]] = {}
    for _ in range(repeat):
        for q in queries:
            text, kind = q if isinstance(q, tuple) else (q, "")
            t = time.perf_counter()
            search(layout, text, kind, n_days=n_days)
            took = time.perf_counter() - t
            times.append(took)
            by_kind.setdefault(kind or "any", []).append(took)
    return {
        "index_build_s": build_s,
        "days": len(days),
        **_figures(times),
        "by_kind": {k: _figures(v) for k, v in by_kind.items()},
    }


def _figures(times: list[float]) -> dict[str, float]:
    """p50, p95, max (s) and count of some search times (nearest rank)."""
    times = sorted(times)

    def pick(p: float) -> float:
        return times[min(len(times) - 1, int(p * len(times)))]

    return {"p50_s": pick(0.5), "p95_s": pick(0.95), "max_s": times[-1], "n": len(times)}
