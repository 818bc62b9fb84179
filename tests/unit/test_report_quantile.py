"""The report's 99th percentile of the day's scores, from a streaming top-k instead of the whole
column: equal to Polars' quantile (nearest rank, halves rounded away from zero, nulls left out)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.report import DayFigures, score_quantile


@pytest.mark.parametrize("n", [1, 2, 99, 100, 101, 151, 351, 1000, 4567])
def test_score_quantile_equals_polars_quantile(n):
    rng = np.random.default_rng(n)
    for values in (rng.random(n), np.round(rng.random(n), 2), np.zeros(n)):
        scores = pl.DataFrame({S.RISK_SCORE: values})
        for q in (0.5, 0.9, 0.99):
            expected = scores[S.RISK_SCORE].quantile(q)
            assert score_quantile(scores.lazy(), q, n) == expected, (n, q)


def test_nulls_are_left_out_and_an_empty_day_has_none():
    scores = pl.DataFrame({S.RISK_SCORE: [0.1, None, 0.7, 0.3, None]})
    assert score_quantile(scores, 0.99, 3) == scores[S.RISK_SCORE].quantile(0.99) == 0.7
    assert score_quantile(scores.clear(), 0.99, 0) is None


def test_day_figures_p99_is_the_day_s_quantile():
    rng = np.random.default_rng(3)
    n = 2_351  # (n - 1) x 0.99 = 2326.5: a half, rounded up as Polars does
    scores = pl.DataFrame({S.SHIPMENT_ID: [f"s{i}" for i in range(n)], S.RISK_SCORE: rng.random(n)})
    raw = pl.DataFrame({S.MODE: ["post"] * n, S.PORT_OF_ENTRY: ["JFK"] * n})
    figures = DayFigures.of(scores.lazy(), raw.lazy())
    assert figures.score_p99 == scores[S.RISK_SCORE].quantile(0.99)
    assert figures.shipments == n
