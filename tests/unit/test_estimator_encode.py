"""The Polars encode path equals the fitted ColumnTransformer exactly (so predictions do too)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from riskpipe.estimator import TabularRiskClassifier

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _frame(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    code = [None if i % 17 == 0 else f"c{v}" for i, v in enumerate(rng.integers(0, 400, n))]
    kind = [None if i % 11 == 0 else str(v) for i, v in enumerate(rng.choice(["a", "b", "c"], n))]
    frame = pl.DataFrame(
        {"code": code, "kind": kind, "amount": rng.normal(size=n), "flag": rng.random(n) < 0.3},
        schema_overrides={"kind": pl.Enum(["a", "b", "c", "d"])},
    )
    y = (rng.random(n) < 0.2).astype(int)
    return frame, y


def test_encode_equals_the_column_transformer_with_nulls_and_unseen_codes() -> None:
    train, y = _frame(800, 0)
    model = TabularRiskClassifier(max_iter=10, random_state=0).fit(train, y)
    test, _ = _frame(300, 1)
    test = test.with_columns(
        pl.when(pl.int_range(pl.len()) % 5 == 0).then(pl.lit("unseen")).otherwise("code").alias("code")
    )
    fast = model.encode(test)
    slow = np.asarray(model.pipeline_.named_steps["encode"].transform(model._prepare(test)))
    assert fast.dtype == np.float64 and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, slow)  # NaN positions equal too
    assert np.isnan(fast[:, 0]).sum() == 0  # None is a category level of "kind" (index 3), not missing
    np.testing.assert_array_equal(model.predict_proba(test), model.pipeline_.predict_proba(model._prepare(test)))
