"""Training that knows how its labels were chosen: random exams weighted by 1 / selection probability."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.estimator import TabularRiskClassifier
from riskpipe.model import SAMPLE_WEIGHT
from riskpipe.model.fit import fit_risk_model
from riskpipe.store import Layout, write_parquet_atomic
from riskpipe.training import build_training_set, published_probabilities, selection_weights

D1, D2 = date(2026, 1, 5), date(2026, 1, 6)


def _training_rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            S.SHIPMENT_ID: ["a", "b", "c", "d", "e"],
            S.ARRIVAL_DATE: [D1, D1, D1, D2, D2],
            S.EXAM_REASON: ["targeted", "random", "random", "random", None],
            S.SELECTION_PROBABILITY: [None, 0.25, None, None, None],
            S.IS_POSITIVE: [1, 0, 0, 1, 0],
        },
        schema_overrides={S.EXAM_REASON: S.ExamReason, S.IS_POSITIVE: pl.Int8},
    )


def test_random_exams_get_the_inverse_of_their_selection_probability():
    listed = pl.DataFrame({S.SHIPMENT_ID: ["d"], S.SELECTION_PROBABILITY: [0.1]})
    out = selection_weights(_training_rows(), {D1: 200, D2: 50}, listed)
    w = dict(zip(out[S.SHIPMENT_ID], out[SAMPLE_WEIGHT], strict=True))
    assert w["a"] == 1.0  # targeted: stands for itself
    # D1 mixes the two draws (riskpipe.propensity): lam = 1/2 of its random exams are compliance
    # exams, r = 1 / 199 shipments off the list
    assert w["b"] == pytest.approx(0.5 + 0.5 * 4.0)  # its own recorded probability 0.25
    assert w["c"] == pytest.approx(0.5 * 199 + 0.5)  # no probability: the compliance draw
    assert w["d"] == pytest.approx(10.0)  # the published list's probability, D2's only draw
    assert w["e"] == 1.0  # presumed negative


def test_published_probabilities_read_the_exploration_rows(tmp_path):
    layout = Layout(tmp_path)
    frame = pl.DataFrame(
        {
            S.SHIPMENT_ID: ["x", "y"],
            S.SELECTION: ["risk", "exploration"],
            S.SELECTION_PROBABILITY: [1.0, 0.02],
        }
    )
    write_parquet_atomic(frame, layout.day_dir(layout.targets, D1) / "targets.parquet")
    got = published_probabilities(layout, [D1, D2])
    assert got.rows() == [("y", 0.02)]


def test_weighting_and_presumed_negatives_do_not_mix(tmp_path):
    with pytest.raises(RiskpipeError, match="not both"):
        build_training_set(Layout(tmp_path), pl.DataFrame(), [D1], weighted=True, unexamined_share=0.1)


class _Recorder(ClassifierMixin, BaseEstimator):
    """Records the sample weight its fit received."""

    def fit(self, X, y, sample_weight=None):
        self.seen_weight_ = None if sample_weight is None else np.asarray(sample_weight)
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X):
        return np.zeros(X.height)


def _frame(n: int = 60, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (x + rng.normal(scale=0.5, size=n) > 0.8).astype(np.int8)
    return pl.DataFrame({"f": x, S.IS_POSITIVE: y, SAMPLE_WEIGHT: np.where(np.arange(n) % 3 == 0, 5.0, 1.0)})


def test_weights_reach_the_estimator_fit():
    train = _frame()
    model, meta = fit_risk_model(train, None, ["f"], estimator=_Recorder(), linear_weight=0.5)
    assert np.array_equal(model.estimator_.seen_weight_, train[SAMPLE_WEIGHT].to_numpy())
    assert meta["sample_weights"]["max"] == 5.0
    plain, meta = fit_risk_model(train.drop(SAMPLE_WEIGHT), None, ["f"], estimator=_Recorder())
    assert plain.estimator_.seen_weight_ is None and "sample_weights" not in meta


def test_tabular_classifier_and_linear_partner_use_the_weights():
    train = _frame(200, 1)
    X, y = train.select("f"), train[S.IS_POSITIVE].to_numpy()
    # the negatives of the high-f region weigh 20: both models must lower their risk there
    heavy = np.where((y == 0) & (train["f"].to_numpy() > 0.3), 20.0, 1.0)
    high = train.filter(pl.col("f") > 0.8)
    est = dict(random_state=0, max_iter=20, early_stopping=False)
    plain = TabularRiskClassifier(**est).fit(X, y)
    weighted = TabularRiskClassifier(**est).fit(X, y, sample_weight=heavy)
    assert weighted.decision_function(high.select("f")).mean() < plain.decision_function(high.select("f")).mean() - 0.5
    model, _ = fit_risk_model(train.with_columns(pl.Series(SAMPLE_WEIGHT, heavy)), None, ["f"], linear_weight=0.5)
    unweighted, _ = fit_risk_model(train.drop(SAMPLE_WEIGHT), None, ["f"], linear_weight=0.5)
    assert model.linear_.predict_risk(high).mean() < unweighted.linear_.predict_risk(high).mean() - 0.05


def test_weights_can_be_clipped():
    out = selection_weights(_training_rows(), {D1: 200, D2: 50}, max_weight=5.0)
    w = dict(zip(out[S.SHIPMENT_ID], out[SAMPLE_WEIGHT], strict=True))
    assert w["b"] == pytest.approx(2.5) and w["c"] == 5.0 and w["d"] == 5.0 and w["a"] == 1.0


def test_model_card_states_the_selection_weights():
    from riskpipe.model.card import model_card

    train = _frame()
    _, meta = fit_risk_model(train, None, ["f"], estimator=_Recorder())
    assert "20 random exams weighted by 1 / their selection probability (up to 5)" in model_card(meta)
    _, plain = fit_risk_model(train.drop(SAMPLE_WEIGHT), None, ["f"], estimator=_Recorder())
    assert "Selection weights" not in model_card(plain)


def test_weights_of_compliance_and_exploration_exams_sum_to_the_day():
    """A day of 10,000 shipments with 100 compliance random exams (1 %) and 20 exploration exams
    (recorded chance 0.002): each draw stands for the whole day, so together their weights must
    sum to about the day's shipments, not twice it."""
    day = date(2026, 1, 10)
    rows = [(f"c{i}", None) for i in range(100)] + [(f"e{i}", 0.002) for i in range(20)]
    data = pl.DataFrame(
        {
            S.SHIPMENT_ID: [r[0] for r in rows],
            S.EXAM_REASON: pl.Series(["random"] * len(rows)).cast(S.ExamReason),
            S.SELECTION_PROBABILITY: pl.Series([r[1] for r in rows], dtype=pl.Float64),
            S.ARRIVAL_DATE: [day] * len(rows),
        }
    )
    total = selection_weights(data, {day: 10_000})[SAMPLE_WEIGHT].sum()
    assert abs(total - 10_000) < 200
