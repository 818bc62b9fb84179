"""Search latency on a home: seconds per search over its last 90 days (the workbench's search
page answers from :mod:`riskpipe.search`'s per-day identifier indexes)."""

from __future__ import annotations

import time

from riskpipe.search import index_path, search, search_days
from riskpipe.store import Layout


def bench_search(layout: Layout, queries: list[str], repeat: int = 1) -> dict[str, float]:
    """Seconds per search (p50, p95, max) over ``queries`` on the home's last 90 days, indexes
    built first (their build time reported apart)."""
    t0 = time.perf_counter()
    for d in search_days(layout):
        index_path(layout, d)
    build_s = time.perf_counter() - t0
    times: list[float] = []
    for _ in range(repeat):
        for q in queries:
            t = time.perf_counter()
            search(layout, q)
            times.append(time.perf_counter() - t)
    times.sort()

    def pick(p: float) -> float:
        return times[min(len(times) - 1, int(p * len(times)))]

    return {"index_build_s": build_s, "p50_s": pick(0.5), "p95_s": pick(0.95), "max_s": times[-1], "n": len(times)}
