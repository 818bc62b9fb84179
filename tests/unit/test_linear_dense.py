"""The linear partner's probability computed with numpy from its fitted layout equals the
scikit-learn pipeline's (imputed numeric nulls, scaled values, infrequent and unseen codes)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from riskpipe.model import LinearBaseline, _linear_frame


def _frame(n: int, seed: int, codes: list[str]) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    value = rng.uniform(0, 200, n)
    return pl.DataFrame(
        {
            "value": np.where(rng.random(n) < 0.1, np.nan, value),
            "count": rng.integers(0, 9, n).astype(np.int32),
            "flag": rng.random(n) < 0.3,
            "kind": rng.choice(codes, n).tolist(),
            "port": np.where(rng.random(n) < 0.05, None, rng.choice(["a", "b", "c"], n)).tolist(),
        }
    ).with_columns(pl.col("value").fill_nan(None))


@pytest.fixture(scope="module")
def fitted() -> LinearBaseline:
    train = _frame(800, 0, ["k1", "k2", "k3"] + [f"rare{i}" for i in range(60)])  # rare: infrequent
    y = ((train["value"].fill_null(0) > 120) | (train["kind"] == "k1")).cast(pl.Int8).to_numpy()
    return LinearBaseline(["value", "count", "flag", "kind", "port"]).fit(train, y)


@pytest.mark.parametrize("codes", [63, 3])  # many codes: a sparse transformer output; few: dense
def test_numpy_probability_equals_the_pipeline(codes):
    train = _frame(800, 0, ["k1", "k2", "k3"] + [f"rare{i}" for i in range(codes - 3)])  # rare: infrequent
    y = ((train["value"].fill_null(0) > 120) | (train["kind"] == "k1")).cast(pl.Int8).to_numpy()
    fitted = LinearBaseline(["value", "count", "flag", "kind", "port"]).fit(train, y)
    assert fitted.pipeline_.named_steps["encode"].sparse_output_ == (codes > 3)
    X = _frame(3000, 1, ["k1", "k2", "k3", "rare3", "never-seen"])
    assert fitted._dense_plan() is not None  # the numpy path is the one taken
    expected = fitted.pipeline_.predict_proba(_linear_frame(X, fitted.feature_columns_))[:, 1]
    np.testing.assert_allclose(fitted.predict_risk(X), expected, rtol=0, atol=1e-15)


def test_other_layouts_use_the_pipeline(fitted, monkeypatch):
    X = _frame(50, 2, ["k1", "k2"])
    scaler = fitted.pipeline_.named_steps["encode"].named_transformers_["num"].steps[1][1]
    monkeypatch.setattr(scaler, "with_mean", False)  # a layout fit never builds
    assert fitted._dense_plan() is None
    expected = fitted.pipeline_.predict_proba(_linear_frame(X, fitted.feature_columns_))[:, 1]
    np.testing.assert_array_equal(fitted.predict_risk(X), expected)


@pytest.mark.parametrize("codes", [63, 3])
def test_a_row_s_probability_does_not_depend_on_the_rows_scored_with_it(codes):
    """A provisional day, a night's batch and a distributed piece score the same shipment among
    different rows: its probability must be the same to the last bit (BLAS's matrix-vector
    product summed a row in an order set by its place and the block's memory alignment; CI saw
    the provisional and nightly scores of one day differ)."""
    train = _frame(800, 0, ["k1", "k2", "k3"] + [f"rare{i}" for i in range(codes - 3)])
    y = ((train["value"].fill_null(0) > 120) | (train["kind"] == "k1")).cast(pl.Int8).to_numpy()
    fitted = LinearBaseline(["value", "count", "flag", "kind", "port"]).fit(train, y)
    X = _frame(3000, 1, ["k1", "k2", "k3", "rare3", "never-seen"])
    whole = fitted.predict_risk(X)
    for start in range(1, 40):
        np.testing.assert_array_equal(fitted.predict_risk(X.slice(start)), whole[start:])
        np.testing.assert_array_equal(fitted.predict_risk(X.slice(0, X.height - start)), whole[: X.height - start])
        np.testing.assert_array_equal(fitted.predict_risk(X.gather_every(7, start)), whole[start::7])
