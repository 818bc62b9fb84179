from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
import skops.io as sio
from sklearn.base import clone

from riskpipe.estimator import FREQ_SUFFIX, TABULAR_TRUSTED_TYPES, TabularRiskClassifier
from riskpipe.metrics import precision_at_frac

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _planted(n: int = 3000, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """Positives come from 30 of 600 risky codes, a risky category, or a large amount."""
    rng = np.random.default_rng(seed)
    code = rng.integers(0, 600, n)
    kind = rng.choice(["a", "b", "c", "d"], n)
    amount = rng.normal(size=n)
    y = ((code < 30) | ((kind == "d") & (amount > 1.0)) | (rng.random(n) < 0.01)).astype(int)
    frame = pl.DataFrame(
        {
            "code": code.astype(str).tolist(),
            "kind": kind.tolist(),
            "amount": amount,
            "flag": rng.random(n) < 0.5,
        }
    )
    return frame, y


def _fast(**kw) -> TabularRiskClassifier:
    return TabularRiskClassifier(max_iter=60, learning_rate=0.2, random_state=0, **kw)


def test_roles_are_auto_detected_by_dtype_and_level_count() -> None:
    frame, y = _planted(600)
    frame = frame.with_columns(pl.lit(date(2024, 1, 2)).alias("day"))
    model = _fast(max_categories=10).fit(frame, y)
    assert model.numeric_features_ == ["amount", "flag", "day"]
    assert model.categorical_features_ == ["kind"]
    assert model.high_cardinality_features_ == ["code"]
    assert model.encoded_feature_names_ == ["kind", "code", "amount", "flag", "day", "code" + FREQ_SUFFIX]


def test_explicit_roles_read_integer_codes_as_text_and_ignore() -> None:
    frame, y = _planted(600)
    frame = frame.with_columns(pl.col("code").cast(pl.Int64), pl.int_range(pl.len()).alias("row_id"))
    model = _fast(high_cardinality=["code"], ignore=["row_id"]).fit(frame, y)
    assert model.high_cardinality_features_ == ["code"]
    assert "row_id" not in model.feature_names_in_
    # a code means the same whether it arrives as int or text
    as_text = frame.with_columns(pl.col("code").cast(pl.String))
    np.testing.assert_array_equal(model.predict_proba(frame), model.predict_proba(as_text))


def test_frequency_table_is_relative_frequency_with_nulls() -> None:
    frame = pl.DataFrame({"code": ["x", "x", None, "y"], "v": [1.0, 2.0, 3.0, 4.0]})
    model = TabularRiskClassifier(
        high_cardinality=["code"], max_iter=2, early_stopping=False, min_samples_leaf=1, target_encoding_cv=2
    )
    model.fit(frame, [0, 1, 0, 1])
    keys, freqs = model.frequencies_["code"]
    assert dict(zip(keys, freqs, strict=False)) == {"\x00null": 0.25, "x": 0.5, "y": 0.25}
    encoded = model.encode(pl.DataFrame({"code": ["x", "zz", None], "v": [0.0, 0.0, 0.0]}))
    freq_col = model.encoded_feature_names_.index("code" + FREQ_SUFFIX)
    assert encoded[:, freq_col].tolist() == [0.5, 0.0, 0.25]


def test_finds_planted_signal() -> None:
    train, y_train = _planted(4000, seed=1)
    test, y_test = _planted(2000, seed=2)
    model = _fast().fit(train, y_train)
    score = model.predict_proba(test)[:, 1]
    base = y_test.mean()
    assert precision_at_frac(y_test, score, 0.05) > 3 * base


def test_unseen_levels_and_nulls_give_finite_probabilities() -> None:
    train, y = _planted(800)
    model = _fast().fit(train, y)
    odd = pl.DataFrame(
        {"code": ["never-seen", None], "kind": ["zzz", None], "amount": [None, 0.5], "flag": [None, True]},
        schema=train.schema,
    )
    proba = model.predict_proba(odd)
    assert proba.shape == (2, 2)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_categorical_dtypes_accepted() -> None:
    train, y = _planted(800)
    as_cat = train.with_columns(pl.col("kind").cast(pl.Categorical), pl.col("code").cast(pl.Categorical))
    model = _fast().fit(as_cat, y)
    assert model.categorical_features_ == ["kind"]
    np.testing.assert_allclose(model.predict_proba(as_cat), model.predict_proba(train))


def test_errors_are_clear() -> None:
    train, y = _planted(300)
    with pytest.raises(ValueError, match="not in the frame"):
        _fast(categorical=["nope"]).fit(train, y)
    with pytest.raises(ValueError, match="two classes"):
        _fast().fit(train, np.zeros(train.height))
    model = _fast().fit(train, y)
    with pytest.raises(ValueError, match="missing feature column"):
        model.predict_proba(train.drop("amount"))
    with pytest.raises(ValueError, match="unsupported dtype"):
        _fast().fit(train.with_columns(pl.lit([1, 2]).alias("lst")), y)


def test_sklearn_conventions() -> None:
    train, y = _planted(400)
    model = _fast()
    assert model.fit(train, y) is model
    twin = clone(model)
    assert twin.get_params() == model.get_params()
    assert not hasattr(twin, "pipeline_")
    np.testing.assert_array_equal(model.classes_, [0, 1])
    np.testing.assert_array_equal(_fast().fit(train, y).predict_proba(train), model.predict_proba(train))


def test_skops_round_trip_gives_identical_predictions(tmp_path) -> None:
    train, y = _planted(800)
    model = _fast().fit(train, y)
    from riskpipe.modelfile import dumps_model, loads_model

    data = dumps_model(model)  # the registry's way: no function reference in the file
    assert set(sio.get_untrusted_types(data=data)) <= set(TABULAR_TRUSTED_TYPES)
    loaded = loads_model(data)
    np.testing.assert_array_equal(loaded.predict_proba(train), model.predict_proba(train))


def test_a_column_with_a_handful_of_values_fits_and_changes_no_prediction() -> None:
    """A party-graph column in a young home holds a few links: scikit-learn's binning crashed when
    early stopping's split left it without a value ("window shape cannot be larger than input
    array shape"). Fewer values than min_samples_leaf can never be split on, so the model equals
    one fitted without the column."""
    X, y = _planted(600)
    sparse = np.full(X.height, np.nan)
    sparse[[3, 250]] = [1.0, 2.0]  # two links
    with_col = X.with_columns(pl.Series("links", sparse), pl.lit(None, pl.Float64).alias("none_yet"))
    model = _fast(early_stopping=True, validation_fraction=0.1).fit(with_col, y)
    plain = _fast(early_stopping=True, validation_fraction=0.1).fit(X, y)
    np.testing.assert_allclose(model.predict_proba(with_col)[:, 1], plain.predict_proba(X)[:, 1], rtol=1e-12)


def test_model_loads_in_threads_never_overlap(monkeypatch) -> None:
    """Threads loading models at once (the threaded night's shards) are serialised: CPython 3.11.7's
    ``ast`` (which skops uses on the file's type names) failed with "AST constructor recursion
    depth mismatch" when two threads parsed at once (python/cpython#106905)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from riskpipe import modelfile

    train, y = _planted(400)
    data = modelfile.dumps_model(_fast().fit(train, y))
    real = modelfile.sio.get_untrusted_types
    active, most = 0, 0
    guard = threading.Lock()

    def watched(*args, **kwargs):
        nonlocal active, most
        with guard:
            active += 1
            most = max(most, active)
        time.sleep(0.02)  # long enough for another thread to arrive if nothing serialises
        try:
            return real(*args, **kwargs)
        finally:
            with guard:
                active -= 1

    monkeypatch.setattr(modelfile.sio, "get_untrusted_types", watched)
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: modelfile.loads_model(data), range(8)))
    assert most == 1
    assert all(m.predict_proba(train).shape == (train.height, 2) for m in models)
