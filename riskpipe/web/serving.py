"""How the workbench is served: the default number of worker processes (used by ``riskpipe serve``
and by the workbench benchmark, which serves it the way users do)."""

from __future__ import annotations

import os


def default_workers() -> int:
    """Worker processes of ``serve`` by default: one per core, at most 4. Each worker holds its
    own caches of the day (about 1.5 GB on a 4 M-row day) and warms the listed targets before it
    accepts connections; with those warm caches, on 2 cores, 20 closed-loop clients on the 4 M-row
    day got the shipment page at p95 196 ms with 2 workers against 507-625 ms with one, and the
    list page at 48 vs 43 ms (README, "Two load models"). Before the warm caches one worker had
    been better (p95 815 vs 2,070 ms), when each page's Polars scans used both cores."""
    return max(1, min(4, os.cpu_count() or 1))
