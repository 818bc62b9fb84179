"""Search latency on a home: seconds per search over its last 90 days, as the workbench's search
page searches (:func:`riskpipe.search.find`: every match counted, one page of details read from
the per-day indexes)."""

from __future__ import annotations

import time

from riskpipe.search import PAGE_ROWS, SEARCH_DAYS, find, index_path, search_days
from riskpipe.store import Layout


def bench_search(
    layout: Layout, queries: list[str] | list[tuple[str, str]], repeat: int = 1, n_days: int = SEARCH_DAYS
) -> dict:
    """Seconds per search (p50, p95, max) over ``queries`` (a text, or (text, kind) to search one
    identifier kind) on the home's last ``n_days`` days, indexes built first (their build time
    reported apart); ``by_kind``: the same figures per identifier kind asked ("any": every kind);
    ``cpu``: the same figures in CPU-seconds of this process (wall clock is noisy on a shared
    machine); ``found``: the most shipments one search found."""
    t0 = time.perf_counter()
    days = search_days(layout, n_days=n_days)
    for d in days:
        index_path(layout, d)
    build_s = time.perf_counter() - t0
    times: list[float] = []
    cpu: list[float] = []
    most = 0
    by_kind: dict[str, list[float]] = {}
    for _ in range(repeat):
        for q in queries:
            text, kind = q if isinstance(q, tuple) else (q, "")
            t, c = time.perf_counter(), time.process_time()
            found = find(layout, text, kind, n_days=n_days, limit=PAGE_ROWS)
            took = time.perf_counter() - t
            cpu.append(time.process_time() - c)
            most = max(most, found.total)
            times.append(took)
            by_kind.setdefault(kind or "any", []).append(took)
    return {
        "index_build_s": build_s,
        "days": len(days),
        **_figures(times),
        "by_kind": {k: _figures(v) for k, v in by_kind.items()},
        "cpu": _figures(cpu) if cpu else {},
        "found": most,
    }


def _figures(times: list[float]) -> dict[str, float]:
    """p50, p95, max (s) and count of some search times (nearest rank)."""
    times = sorted(times)

    def pick(p: float) -> float:
        return times[min(len(times) - 1, int(p * len(times)))]

    return {"p50_s": pick(0.5), "p95_s": pick(0.95), "max_s": times[-1], "n": len(times)}
