"""The cascade's first stage on the narrow matrix of the columns its trees split on equals the
first trees on the whole matrix, bit for bit (numeric, native categorical, target-encoded
columns, nulls, unseen codes), so the scores do not move."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.estimator import TabularRiskClassifier
from riskpipe.model.fit import fit_risk_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    value = rng.uniform(0, 200, n)
    kind = rng.choice(["a", "b", "c", None], n)
    code = rng.choice([f"c{i}" for i in range(300 if seed else 200)], n)  # unseen codes after training
    y = ((value > 150) & (kind == "a")) | (rng.random(n) < 0.05) | (np.char.endswith(code.astype(str), "7"))
    cols = {f"noise{j}": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)) for j in range(8)}
    return pl.DataFrame(
        {
            S.SHIPMENT_ID: [f"s{seed}-{i:04d}" for i in range(n)],
            S.DECLARED_VALUE: value,
            "kind": kind.tolist(),
            "code": code.tolist(),
            **cols,
            S.IS_POSITIVE: y.astype(np.int8),
        }
    ).with_columns(pl.col(f"noise{j}").fill_nan(None) for j in range(8))


FEATURES = [S.DECLARED_VALUE, "kind", "code", *(f"noise{j}" for j in range(8))]


@pytest.fixture(scope="module")
def model():
    est = TabularRiskClassifier(
        high_cardinality=["code"],
        max_iter=40,
        learning_rate=0.2,
        max_leaf_nodes=4,
        early_stopping=False,
        min_samples_leaf=5,
        random_state=0,
    )
    fitted, _ = fit_risk_model(_frame(1500, 0), _frame(600, 1), FEATURES, estimator=est, linear_weight=0.5)
    return fitted


def test_first_trees_on_their_columns_equal_the_first_trees_on_all(model):
    X = _frame(3000, 2)
    est, trees = model.estimator_, model.stage1_trees_
    used, log_odds = est.head_trees(trees)
    whole = est.encode(model._X(X))
    assert 0 < len(used) < whole.shape[1]  # the first stage reads fewer columns
    narrow = est.encode(model._X(X), columns=used)
    np.testing.assert_array_equal(narrow, whole[:, used])  # NaN where NaN
    np.testing.assert_array_equal(log_odds(narrow), model._stage1(whole, trees))


def test_cascade_scores_equal_the_whole_matrix_path(model, monkeypatch):
    X = _frame(3000, 3)
    always = (X[S.DECLARED_VALUE] > 195).to_numpy()
    fast = model.predict_risk_cascade(X, 0.05, always)
    monkeypatch.setattr(TabularRiskClassifier, "head_trees", lambda self, trees: None)  # the whole-matrix path
    np.testing.assert_array_equal(fast, model.predict_risk_cascade(X, 0.05, always))


def test_head_trees_refuses_what_it_cannot_narrow(model):
    assert model.estimator_.head_trees(0) is None
    assert model.estimator_.head_trees(10_000) is None


def test_all_trees_walk_only_the_columns_they_split_on_with_equal_log_odds(model, monkeypatch):
    """The whole model's trees (the cascade's second stage, occlusion) encode only the columns
    some tree splits on, and their log-odds equal HGB's on the whole matrix bit for bit."""
    X = _frame(3000, 4)
    est = model.estimator_
    hgb = est.pipeline_.named_steps["model"]
    whole = est.encode(model._X(X))
    expected = hgb.decision_function(whole)
    widths = []
    encode = TabularRiskClassifier.encode
    monkeypatch.setattr(
        TabularRiskClassifier,
        "encode",
        lambda self, X, columns=None: widths.append(columns) or encode(self, X, columns),
    )
    got = est.decision_function(model._X(X))
    np.testing.assert_array_equal(got, expected)
    used, _ = est.head_trees(len(hgb._predictors))
    assert widths and all(c == used for c in widths)
    monkeypatch.setattr(TabularRiskClassifier, "head_trees", lambda self, trees: None)  # the whole-matrix path
    np.testing.assert_array_equal(est.decision_function(model._X(X)), expected)
