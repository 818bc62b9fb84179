"""The synthetic world behind ``riskpipe generate``: population, catalog, illicit cells, exams, files.

Public API: :func:`generate`, :data:`DEFAULT_PREVALENCE`, :class:`GenerateSummary`.

``DEFAULT_PREVALENCE`` is 0.003 (3 fentanyl-related parcels in 1,000) so that a demo of about 40
days x 10,000 parcels holds enough labelled positives to learn from; real rates are about 1 in
10,000 or rarer (pass ``prevalence=1e-4`` for a realistic, much harder world).

Files written under the data home: ``landing/manifest-D-<n>.{csv,parquet,ndjson}[.gz]``,
``landing/partner-exports-D.<ext>``, ``landing/outcomes/outcomes-D.csv`` (every day but the last,
which is "tonight"), and ``truth/arrival_date=D/truth.parquet`` (evaluation only).
"""

from __future__ import annotations

from riskpipe.synth.world import DEFAULT_PREVALENCE, DaySummary, GenerateSummary, generate

__all__ = ["DEFAULT_PREVALENCE", "DaySummary", "GenerateSummary", "generate"]
