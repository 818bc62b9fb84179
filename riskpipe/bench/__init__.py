"""Benchmarks: ``riskpipe bench`` and the per-stage measurements it runs in child processes.

Nothing in the library's stage modules imports this package; it sits at the top layer beside the
command line (it drives flows, the workbench and the synthetic world).
"""

from __future__ import annotations

from riskpipe.bench.core import parse_stages, run_bench
from riskpipe.bench.output import render_table, summary_lines, write_results

__all__ = ["parse_stages", "render_table", "run_bench", "summary_lines", "write_results"]
