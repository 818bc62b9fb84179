"""Fast scoring paths equal the plain ones: chunked trees, the chunked cascade, batches, top rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import riskpipe.estimator as E
from riskpipe import schema as S
from riskpipe.estimator import TabularRiskClassifier
from riskpipe.model.fit import fit_risk_model
from riskpipe.registry import LoadedModel
from riskpipe.rules import parse_rules
from riskpipe.score import score_frame, top_rows

RULES = f"""
[[rule]]
code = "BIG"
text = "big"
weight = 0.6
all = [ {{ field = "{S.DECLARED_VALUE}", op = "gt", value = 150 }} ]
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    value = rng.uniform(0, 200, n)
    kind = rng.choice(["a", "b", "c"], n)
    y = ((value > 150) & (kind == "a")) | (rng.random(n) < 0.05)
    return pl.DataFrame(
        {
            S.SHIPMENT_ID: [f"s{seed}-{i:04d}" for i in range(n)],
            S.DECLARED_VALUE: value,
            "kind": kind.tolist(),
            "noise": rng.normal(size=n),
            S.IS_POSITIVE: y.astype(np.int8),
        }
    )


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    est = TabularRiskClassifier(
        max_iter=30, learning_rate=0.2, early_stopping=False, min_samples_leaf=5, random_state=0
    )
    model, meta = fit_risk_model(
        _frame(600, 0), _frame(300, 1), [S.DECLARED_VALUE, "kind", "noise"], estimator=est, linear_weight=0.0
    )
    return LoadedModel(version="t", model=model, meta=meta)


def test_chunked_tree_predictions_equal_one_call(loaded, monkeypatch):
    X = _frame(200, 2)
    est = loaded.model.estimator_
    whole = est.decision_function(X)
    monkeypatch.setattr(E, "PREDICT_CHUNK", 7)
    np.testing.assert_array_equal(est.decision_function(X), whole)
    np.testing.assert_array_equal(est.predict_proba(X)[:, 1], est.pipeline_.predict_proba(est._prepare(X))[:, 1])


def test_cascade_does_not_depend_on_the_chunk_size(loaded, monkeypatch):
    X = _frame(400, 3)
    inner = loaded.model
    assert inner.stage1_trees_ == 15
    always = (X[S.DECLARED_VALUE] > 190).to_numpy()
    expected = inner.predict_risk_cascade(X, 0.05, always)
    monkeypatch.setattr(E, "PREDICT_CHUNK", 9)
    got = inner.predict_risk_cascade(X, 0.05, always)
    np.testing.assert_array_equal(got, expected)
    # candidates (top 5 % of the first stage, and the always rows) carry the whole model's probability
    full = inner.predict_risk(X)
    assert np.sum(got == full) >= 20 + always.sum() - 5 and np.array_equal(got[always], full[always])


def test_batched_scoring_equals_unbatched_and_cascade_keeps_the_top(loaded, monkeypatch):
    day = _frame(500, 4)
    rules = parse_rules(RULES)
    one = score_frame(day, loaded, rules, top_n=20)
    assert_frame_equal(score_frame(day, loaded, rules, top_n=20, batch_rows=64), one)
    assert (
        one[S.REASONS].list.len().max() >= 1
        and one.filter(pl.col(S.RULE_SCORE) > 0)[S.REASONS].list.first().eq("BIG").all()
    )
    # the cascade only changes rows outside the candidates: the top 10 by the whole model stay on top
    casc = score_frame(day, loaded, rules, top_n=20, cascade_min_rows=100)

    def top(f: pl.DataFrame) -> list[str]:
        return f.sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False]).head(10)[S.SHIPMENT_ID].to_list()

    assert top(casc) == top(one)


def test_top_rows_breaks_ties_by_id_without_a_full_sort():
    risk = np.array([0.5, 0.9, 0.5, 0.1, 0.5])
    ids = pl.Series(["e", "a", "c", "b", "d"])
    assert top_rows(risk, ids, 3).tolist() == [1, 2, 4]
    assert top_rows(risk, ids, 10).tolist() == [1, 2, 4, 0, 3]
    assert top_rows(risk, ids, 0).tolist() == []


def test_first_stage_equals_the_staged_prediction_at_that_many_trees(loaded):
    inner = loaded.model
    Z = inner.estimator_.encode(inner._X(_frame(150, 5)))
    hgb = inner._boosting()
    staged = list(hgb.staged_decision_function(Z))
    for trees in (1, 15, len(staged)):
        np.testing.assert_allclose(inner._stage1(Z, trees), np.asarray(staged[trees - 1]).ravel(), rtol=0, atol=1e-12)


def test_join_raw_features_sorted_fast_path_equals_the_join():
    from riskpipe.score import join_raw_features

    feats = pl.DataFrame({S.SHIPMENT_ID: ["a", "b", "c", "d"], "f": [1, 2, 3, 4], S.HTS_CODE: ["x"] * 4})
    raw = pl.DataFrame(
        {S.SHIPMENT_ID: ["c", "a", "d", "b"], S.DESCRIPTION: ["C", "A", "D", "B"], S.HTS_CODE: ["r"] * 4}
    )
    fast = join_raw_features(raw, feats)
    assert fast.columns == [S.SHIPMENT_ID, S.DESCRIPTION, "f", S.HTS_CODE]  # raw first; features win a clash
    assert fast[S.DESCRIPTION].to_list() == ["A", "B", "C", "D"] and fast["f"].to_list() == [1, 2, 3, 4]
    # features not sorted by id, or a shipment without features: the join, still in features order
    slow = join_raw_features(raw, feats.reverse())
    assert_frame_equal(slow, fast.reverse())
    partial = join_raw_features(raw, feats.filter(pl.col(S.SHIPMENT_ID) != "b"))
    assert partial[S.SHIPMENT_ID].to_list() == ["a", "c", "d"] and partial[S.DESCRIPTION].to_list() == ["A", "C", "D"]


@pytest.fixture(scope="module")
def loaded_linear() -> LoadedModel:
    """The production shape: trees and the linear partner (whose scaler refuses infinities)."""
    est = TabularRiskClassifier(
        max_iter=30, learning_rate=0.2, early_stopping=False, min_samples_leaf=5, random_state=0
    )
    model, meta = fit_risk_model(
        _frame(600, 0), _frame(300, 1), [S.DECLARED_VALUE, "kind", "noise"], estimator=est, linear_weight=0.3
    )
    return LoadedModel(version="t", model=model, meta=meta)


@pytest.mark.parametrize("which", ["loaded", "loaded_linear"])
def test_scoring_survives_non_finite_feature_values(which, request):
    """A non-finite value that slipped into the features (a store written by an older version,
    issue 12) must not stop the night: inf is clipped, NaN is missing; the scores stay
    probabilities."""
    loaded = request.getfixturevalue(which)
    day = _frame(60, 6).with_columns(
        pl.Series(S.DECLARED_VALUE, [float("inf"), float("-inf"), float("nan"), 1.7e308] + [10.0] * 56),
        pl.Series("noise", [float("nan"), float("inf")] + [0.0] * 58),
    )
    out = score_frame(day, loaded, parse_rules(RULES), top_n=10)
    risk = out[S.RISK_SCORE].to_numpy()
    assert np.isfinite(risk).all() and ((risk >= 0) & (risk <= 1)).all()
    assert out.height == 60
    # the clipped infinity scores as the largest finite value would
    big = day.with_columns(
        pl.Series(S.DECLARED_VALUE, [1e18, -1e18, float("nan"), 1e18] + [10.0] * 56),
        pl.Series("noise", [None, 1e18] + [0.0] * 58),
    )
    assert_frame_equal(score_frame(big, loaded, parse_rules(RULES), top_n=10).drop(S.REASONS), out.drop(S.REASONS))


def test_nightly_features_and_score_survive_an_old_store_with_infinities(tmp_path):
    """The whole path of a night (features from the raw store, then scores with the linear
    partner in the ensemble) on a raw partition holding inf / NaN / denormal values."""
    from datetime import date

    from riskpipe.features import FEATURE_COLUMNS, build_features
    from riskpipe.features.testing import write_raw_day
    from riskpipe.score import score_day
    from riskpipe.store import Layout

    lay = Layout(tmp_path)
    d0, d1 = date(2026, 3, 9), date(2026, 3, 10)
    rng = np.random.default_rng(0)
    write_raw_day(
        lay,
        d0,
        [
            {S.DECLARED_VALUE: float(v), S.DECLARED_VALUE_USD: float(v), S.GROSS_WEIGHT_KG: float(w)}
            for v, w in zip(rng.uniform(1, 900, 300), rng.uniform(0.05, 5, 300), strict=False)
        ],
    )
    train = build_features(lay, d0).with_columns(pl.Series(S.IS_POSITIVE, (rng.random(300) < 0.2).astype(np.int8)))
    est = TabularRiskClassifier(
        max_iter=20, learning_rate=0.2, early_stopping=False, min_samples_leaf=5, random_state=0
    )
    model, meta = fit_risk_model(train, train, FEATURE_COLUMNS, estimator=est, linear_weight=0.3)
    loaded_model = LoadedModel(version="t", model=model, meta=meta)
    write_raw_day(
        lay,
        d1,
        [
            {S.DECLARED_VALUE: 1.7e308, S.DECLARED_VALUE_USD: float("inf")},
            {S.GROSS_WEIGHT_KG: 1e-320},
            {S.DECLARED_VALUE_USD: float("nan")},
            {S.DECLARED_VALUE_USD: float("-inf"), S.GROSS_WEIGHT_KG: float("inf")},
            {},
            {},
        ],
    )
    scored = score_day(lay, d1, loaded_model, parse_rules(RULES), pl.DataFrame(schema=S.LABEL_SCHEMA))
    risk = scored[S.RISK_SCORE].to_numpy()
    assert scored.height == 6 and np.isfinite(risk).all() and ((risk >= 0) & (risk <= 1)).all()


def test_a_day_scored_from_its_file_in_chunks_equals_the_whole_day(loaded, monkeypatch, tmp_path):
    """score_features_file reads the id-sorted features file a chunk at a time (the cascade's
    batches whole inside a chunk) and finds the day's top rows among the chunks' top rows: the
    scores frame equals score_frame on the whole day, reasons of the top rows included."""
    import riskpipe.score as score
    from riskpipe.score import join_raw_features, score_features_file

    day = _frame(2600, 5).with_columns(pl.col(S.SHIPMENT_ID).str.replace("s5-", "z"))
    rules = parse_rules(RULES)
    features = day.select(S.SHIPMENT_ID, S.DECLARED_VALUE, "kind", "noise").sort(S.SHIPMENT_ID)
    path = tmp_path / "features.parquet"
    features.write_parquet(path, row_group_size=300)
    raw = day.select(S.SHIPMENT_ID, pl.col("kind").alias("raw_kind")).sample(fraction=1.0, shuffle=True, seed=1)
    monkeypatch.setattr(score, "BATCH_ROWS", 250)
    monkeypatch.setattr(score, "CASCADE_MIN_ROWS", 100)
    whole = score_frame(join_raw_features(raw, features), loaded, rules, top_n=40, batch_rows=250, cascade_min_rows=100)
    chunks = []
    score_rows = score._score_rows
    monkeypatch.setattr(score, "_score_rows", lambda j, *a, **k: chunks.append(j.height) or score_rows(j, *a, **k))
    got = score_features_file(path, raw.lazy(), loaded, rules, features.columns, chunk_rows=500, top_n=40)
    assert chunks == [500] * 5 + [100]
    assert got is not None
    assert_frame_equal(got, whole)
    top = whole.sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False]).head(40)
    assert top[S.REASONS].list.eval(pl.element().str.starts_with("model:")).list.any().any()
    # a file not sorted by id cannot be cut by id ranges: the caller scores the whole day
    features.sort("noise").write_parquet(path)
    assert score_features_file(path, raw.lazy(), loaded, rules, features.columns, chunk_rows=500) is None


def test_reasons_are_gathered_in_pieces_with_the_same_values(loaded, monkeypatch):
    """The reasons column is built in pieces of REASON_PIECE rows (Polars writes a one-chunk
    list column of millions of rows several times slower); the values do not change."""
    import riskpipe.score as score

    day = _frame(500, 6)
    rules = parse_rules(RULES)
    one = score_frame(day, loaded, rules, top_n=20)
    monkeypatch.setattr(score, "REASON_PIECE", 64)
    pieces = score_frame(day, loaded, rules, top_n=20)
    assert pieces[S.REASONS].n_chunks() == 8
    assert_frame_equal(pieces, one)
