"""Population stability index (PSI): the one drift measure of the nightly report and the
workbench's health page.

Pure maths, in the publish layer: the report bins raw values on the reference's deciles
(:func:`psi`), the workbench already holds equal-width score histograms counted in Polars
(:func:`psi_from_counts`); both read the same formula. Conventional reading: < 0.1 stable,
0.1-0.25 moderate shift, > 0.25 major shift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import polars as pl

PSI_BINS = 10
MIN_SHARE = 1e-4  # an empty bin counts as this share: log(0) would make any empty bin infinite


def psi_from_counts(expected: Sequence[int], actual: Sequence[int]) -> float | None:
    """PSI between two histograms over the same bins (None when either is empty)."""
    te, ta = sum(expected), sum(actual)
    if te == 0 or ta == 0:
        return None
    total = 0.0
    for e, a in zip(expected, actual, strict=False):
        pe, pa = max(e / te, MIN_SHARE), max(a / ta, MIN_SHARE)
        total += (pa - pe) * math.log(pa / pe)
    return total


def bin_counts(values: pl.Series, edges: Sequence[float]) -> list[int]:
    """Counts of ``values`` in the bins cut at ``edges`` (``len(edges) + 1`` bins, empty ones 0);
    NaNs, which no bin takes, are counted in one more bin at the end (only when there are any)."""
    n_bins = len(edges) + 1
    idx = values.cut(list(edges), labels=[str(i) for i in range(n_bins)]).cast(pl.String).cast(pl.Int32)
    full = dict.fromkeys(range(n_bins), 0)
    unbinned = 0
    for k, c in idx.value_counts().iter_rows():
        if k is None:
            unbinned = int(c)
        else:
            full[int(k)] = int(c)
    return [full[i] for i in range(n_bins)] + ([unbinned] if unbinned else [])


def psi(expected: pl.Series, actual: pl.Series, bins: int = PSI_BINS) -> float | None:
    """PSI of ``actual`` against ``expected`` on ``expected``'s quantile bins (nulls dropped;
    None when either side has no values)."""
    expected = expected.drop_nulls().cast(pl.Float64)
    actual = actual.drop_nulls().cast(pl.Float64)
    if expected.len() == 0 or actual.len() == 0:
        return None
    quantiles = (expected.quantile(q / bins, "linear") for q in range(1, bins))
    edges = sorted({float(v) for v in quantiles if v is not None})
    return psi_from_counts(bin_counts(expected, edges), bin_counts(actual, edges))
