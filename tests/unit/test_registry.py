from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.model import fit_risk_model
from riskpipe.registry import (
    CHAMPION_FILE,
    META_FILE,
    MODEL_FILE,
    RetrainDecision,
    champion_version,
    list_versions,
    load_model,
    read_decisions,
    record_decision,
    save_model,
    set_champion,
    sha256_file,
)


@pytest.fixture(scope="module")
def fitted():
    from threadpoolctl import threadpool_limits

    from riskpipe.estimator import TabularRiskClassifier

    rng = np.random.default_rng(0)
    n = 600
    x = rng.random(n)
    frame = pl.DataFrame(
        {
            S.SHIPMENT_ID: [f"s{i}" for i in range(n)],
            "f_x": x,
            "f_cat": pl.Series(["a", "b"] * (n // 2)).cast(pl.Enum(["a", "b"])),
            S.IS_POSITIVE: (x > 0.9).astype(np.int8),
        }
    )
    est = TabularRiskClassifier(random_state=0, max_iter=20, min_samples_leaf=5, early_stopping=False)
    with threadpool_limits(1):
        model, meta = fit_risk_model(frame.head(400), frame.tail(200), estimator=est)
    return frame, model, meta


def test_save_load_roundtrip_and_champion(tmp_path, fitted):
    frame, model, meta = fitted
    version = save_model(tmp_path, model, meta, version="v1")
    assert list_versions(tmp_path) == ["v1"]
    saved = json.loads((tmp_path / "v1" / META_FILE).read_text())
    assert saved["sha256"] == sha256_file(tmp_path / "v1" / MODEL_FILE)
    assert saved["feature_columns"] == ["f_x", "f_cat"]
    assert saved["feature_schema"]["f_cat"].startswith("Enum")
    assert (tmp_path / "v1" / "model_card.md").read_text().startswith("# Model card: v1")
    with pytest.raises(RiskpipeError, match="no champion"):
        load_model(tmp_path)
    set_champion(tmp_path, version)
    loaded = load_model(tmp_path, feature_schema={"f_x": pl.Float64, "f_cat": pl.Enum(["a", "b", "c"]), "other": pl.Int8})
    assert loaded.version == "v1" and champion_version(tmp_path) == "v1"
    np.testing.assert_array_equal(loaded.model.predict_risk(frame), model.predict_risk(frame))


def test_tampered_model_is_refused(tmp_path, fitted):
    _, model, meta = fitted
    save_model(tmp_path, model, meta, version="v1")
    with open(tmp_path / "v1" / MODEL_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(RiskpipeError, match="sha256"):
        load_model(tmp_path, "v1")


def test_incompatible_features_are_refused(tmp_path, fitted):
    _, model, meta = fitted
    save_model(tmp_path, model, meta, version="v1")
    with pytest.raises(RiskpipeError, match="needs features not built.*f_cat"):
        load_model(tmp_path, "v1", feature_schema={"f_x": pl.Float64})
    with pytest.raises(RiskpipeError, match="changed type.*f_x"):
        load_model(tmp_path, "v1", feature_schema={"f_x": pl.String, "f_cat": pl.Enum(["a"])})


def test_untrusted_types_are_refused_even_with_a_matching_hash(tmp_path, fitted):
    _, _, meta = fitted
    save_model(tmp_path, {"x": Fraction(1, 3)}, meta, version="evil")
    with pytest.raises(RiskpipeError, match="untrusted types.*fractions.Fraction"):
        load_model(tmp_path, "evil")


def test_champion_must_exist_and_decisions_append(tmp_path, fitted):
    with pytest.raises(RiskpipeError, match="no such model"):
        set_champion(tmp_path, "nope")
    assert not (tmp_path / CHAMPION_FILE).exists()
    record_decision(tmp_path, RetrainDecision(True, "v1", None, "first"))
    record_decision(tmp_path, RetrainDecision(False, "v2", "v1", "worse", challenger_score=0.1, champion_score=0.2))
    rows = read_decisions(tmp_path)
    assert [(r["promoted"], r["challenger_version"], r["champion_version"]) for r in rows] == [
        (True, "v1", None),
        (False, "v2", "v1"),
    ]
