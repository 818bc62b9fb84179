from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score

from riskpipe import metrics as M

# 10 rows, 3 positives; ranking by score: rows 0,1,2,3,... (row 2 and 3 tie at 0.7)
Y = [1, 0, 1, 0, 0, 1, 0, 0, 0, 0]
S = [0.9, 0.8, 0.7, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0]


def test_rank_order_is_stable_and_puts_nan_last() -> None:
    assert M.rank_order([0.5, 0.9, 0.5, np.nan, 0.9]).tolist() == [1, 4, 0, 2, 3]
    assert M.rank_order([np.nan, -np.inf, 1.0]).tolist() == [2, 1, 0]


def test_ties_broken_by_original_position() -> None:
    # rows 2 and 3 tie: top-3 takes row 2 (positive), so precision 2/3
    assert M.precision_at_k(Y, S, 3) == pytest.approx(2 / 3)
    # swapping the tied rows' labels changes the answer deterministically
    y_swapped = [1, 0, 0, 1, 0, 1, 0, 0, 0, 0]
    assert M.precision_at_k(y_swapped, S, 3) == pytest.approx(1 / 3)


def test_precision_recall_lift_at_k_exact() -> None:
    assert M.precision_at_k(Y, S, 1) == 1.0
    assert M.precision_at_k(Y, S, 2) == 0.5
    assert M.recall_at_k(Y, S, 3) == pytest.approx(2 / 3)
    assert M.recall_at_k(Y, S, 6) == 1.0
    assert M.lift_at_k(Y, S, 1) == pytest.approx(1.0 / 0.3)
    assert M.precision_at_k(Y, S, 100) == pytest.approx(0.3)  # k > n means all rows
    with pytest.raises(ValueError):
        M.precision_at_k(Y, S, 0)


def test_k_for_fraction_is_ceiling() -> None:
    assert M.k_for_fraction(8481, 0.05) == 425  # 424.05 -> 425
    assert M.k_for_fraction(8481, 0.10) == 849
    assert M.k_for_fraction(100, 0.07) == 7  # float noise 7.000000000000001 is not 8
    assert M.k_for_fraction(10, 0.01) == 1  # at least one row
    assert M.k_for_fraction(0, 0.1) == 0
    with pytest.raises(ValueError):
        M.k_for_fraction(10, 0.0)


def test_fraction_metrics() -> None:
    assert M.precision_at_frac(Y, S, 0.2) == 0.5  # k=2
    assert M.recall_at_frac(Y, S, 0.3) == pytest.approx(2 / 3)  # k=3
    assert M.lift_at_frac(Y, S, 0.1) == pytest.approx(1 / 0.3)  # k=1


def test_no_positives_gives_zero_not_nan() -> None:
    y0 = [0, 0, 0]
    assert M.recall_at_k(y0, [0.1, 0.2, 0.3], 1) == 0.0
    assert M.lift_at_k(y0, [0.1, 0.2, 0.3], 1) == 0.0
    assert M.pr_auc(y0, [0.1, 0.2, 0.3]) == 0.0


def test_pr_auc_matches_sklearn_including_ties() -> None:
    assert M.pr_auc(Y, S) == pytest.approx(average_precision_score(Y, S))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = rng.integers(0, 20, 500) / 20.0  # many ties
    assert M.pr_auc(y, s) == pytest.approx(average_precision_score(y, s))
    assert M.pr_auc([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)


def test_accepts_polars_series_and_booleans() -> None:
    y = pl.Series([True, False, True])
    s = pl.Series([0.1, 0.2, 0.3])
    assert M.precision_at_k(y, s, 1) == 1.0


def test_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="rows"):
        M.precision_at_k([1, 0], [0.1], 1)
    with pytest.raises(ValueError, match="0/1"):
        M.precision_at_k([2, 0], [0.1, 0.2], 1)


def test_ranking_report_shape_and_values() -> None:
    rep = M.ranking_report(Y, S, fractions=(0.1, 0.2, 0.5), capacity=3)
    assert rep["n"] == 10 and rep["positives"] == 3
    assert rep["base_rate"] == pytest.approx(0.3)
    assert rep["k_at"] == {"10": 1, "20": 2, "50": 5}
    assert rep["precision_at"] == {"10": 1.0, "20": 0.5, "50": pytest.approx(0.4)}
    assert rep["recall_at"]["50"] == pytest.approx(2 / 3)
    assert rep["lift_at"]["10"] == pytest.approx(1 / 0.3)
    assert rep["at_capacity"] == {
        "k": 3,
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
        "lift": pytest.approx((2 / 3) / 0.3),
    }
    assert rep["pr_auc"] == pytest.approx(average_precision_score(Y, S))
    json.dumps(rep)  # JSON-clean: no numpy scalars, no NaN


def test_ranking_report_default_keys() -> None:
    rep = M.ranking_report(Y, S)
    assert list(rep["precision_at"]) == ["1", "2", "5", "10"]
    assert rep["at_capacity"] is None
    assert list(M.ranking_report(Y, S, fractions=(0.005,))["precision_at"]) == ["0.5"]
