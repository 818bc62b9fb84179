"""The synthetic world behind ``riskpipe generate``: population, catalog, illicit cells, exams, files.

Public API: :func:`generate`, :data:`DEFAULT_PREVALENCE`, :class:`GenerateSummary`.
"""

from __future__ import annotations

from riskpipe.synth.world import DEFAULT_PREVALENCE, DaySummary, GenerateSummary, generate

__all__ = ["DEFAULT_PREVALENCE", "DaySummary", "GenerateSummary", "generate"]
