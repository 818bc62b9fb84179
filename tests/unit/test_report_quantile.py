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


def test_day_figures_mean_does_not_depend_on_the_order_or_the_files_of_the_day(tmp_path):
    """The night's summary compares equal whether the rank step read the day whole or in pieces:
    a float mean summed by the streaming engine in the order its threads finish differed in the
    last bit between two reads of the same file (a CI failure; 1 read in 3 on this file)."""
    rng = np.random.default_rng(0)
    n = 500
    values = np.round(rng.random(n) * np.where(rng.random(n) < 0.3, 1.0, 0.4), 2)
    scores = pl.DataFrame({S.RISK_SCORE: values})
    raw = pl.DataFrame({S.MODE: ["post"] * n, S.PORT_OF_ENTRY: ["JFK"] * n})
    scores.write_parquet(tmp_path / "day.parquet", row_group_size=50)
    for i, start in enumerate(range(0, n, 37)):
        scores.slice(start, 37).write_parquet(tmp_path / f"piece-{i:02d}.parquet")
    frames = [pl.scan_parquet(tmp_path / "day.parquet")] * 60 + [
        scores.reverse().lazy(),
        scores.sample(fraction=1.0, shuffle=True, seed=1).lazy(),
        pl.scan_parquet(tmp_path / "piece-*.parquet"),
    ]
    means = {DayFigures.of(frame, raw.lazy()).score_mean for frame in frames}
    assert len(means) == 1
    assert means.pop() == pytest.approx(float(np.mean(values)), rel=1e-15)


def test_day_figures_mean_leaves_out_nulls_and_is_zero_on_an_empty_day():
    raw = pl.DataFrame({S.MODE: ["post"] * 4, S.PORT_OF_ENTRY: ["JFK"] * 4})
    scores = pl.DataFrame({S.RISK_SCORE: [0.25, None, 0.5, 1.0]})
    assert DayFigures.of(scores, raw).score_mean == pytest.approx(1.75 / 3, rel=1e-15)
    assert DayFigures.of(scores.clear(), raw.clear()).score_mean == 0.0
