"""How the workbench is served: the default number of worker processes (used by ``riskpipe serve``
and by the workbench benchmark, which serves it the way users do)."""

from __future__ import annotations

import os


def default_workers() -> int:
    """Worker processes of ``serve`` by default: one per two cores, at most 4. Each worker's
    Polars already uses every core and holds its own caches of the day (a few hundred MB on a
    4 M-row day): on 2 cores, 2 workers answered the shipment page worse under stress than one
    (p95 2,070 vs 815 ms, 19 vs 35 requests/s; commit message of this change)."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))
