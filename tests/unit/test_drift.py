"""The one PSI (riskpipe.drift): raw values on the reference's deciles (report) and ready-made
histograms (workbench health page) read the same formula."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from riskpipe.drift import bin_counts, psi, psi_from_counts


def test_psi_is_zero_for_same_distribution_and_large_for_shift():
    rng = np.random.default_rng(0)
    base = pl.Series(rng.normal(size=20_000))
    same = pl.Series(rng.normal(size=20_000))
    shifted = pl.Series(rng.normal(1.0, 1.0, size=20_000))
    assert psi(base, same) < 0.01
    assert psi(base, shifted) > 0.25
    assert psi(pl.Series([], dtype=pl.Float64), same) is None


def test_psi_from_counts_is_the_textbook_sum_with_empty_bins_floored():
    want = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert psi_from_counts([50, 50], [90, 10]) == want
    floored = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1.0 - 0.5) * math.log(1.0 / 0.5)
    assert psi_from_counts([5, 5], [0, 7]) == floored
    assert psi_from_counts([0, 0], [1, 2]) is None and psi_from_counts([1, 2], []) is None


def test_series_psi_is_counts_psi_on_the_reference_deciles():
    rng = np.random.default_rng(1)
    base = pl.Series(rng.exponential(size=5_000))
    now = pl.Series(rng.exponential(1.3, size=4_000))
    edges = sorted({float(base.quantile(q / 10, "linear")) for q in range(1, 10)})
    counts_base, counts_now = bin_counts(base, edges), bin_counts(now, edges)
    assert len(counts_base) == 10 and sum(counts_base) == 5_000 and sum(counts_now) == 4_000
    assert psi(base, now) == psi_from_counts(counts_base, counts_now)
