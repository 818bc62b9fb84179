from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import stat
from datetime import date
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import skops.io as sio

from riskpipe import schema as S
from riskpipe.decisions import RetrainDecision, _json_default, read_decisions, record_decision
from riskpipe.errors import RiskpipeError
from riskpipe.model.fit import fit_risk_model
from riskpipe.registry import (
    CHAMPION_FILE,
    META_FILE,
    MODEL_FILE,
    champion_version,
    list_versions,
    load_model,
    save_model,
    set_champion,
)
from riskpipe.store import sha256_file


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
    tmp_path = tmp_path / "models"  # the registry key goes beside it, in tmp_path/.riskpipe
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
    loaded = load_model(
        tmp_path, feature_schema={"f_x": pl.Float64, "f_cat": pl.Enum(["a", "b", "c"]), "other": pl.Int8}
    )
    assert loaded.version == "v1" and champion_version(tmp_path) == "v1"
    np.testing.assert_array_equal(loaded.model.predict_risk(frame), model.predict_risk(frame))


def test_tampered_model_is_refused(tmp_path, fitted):
    tmp_path = tmp_path / "models"
    _, model, meta = fitted
    save_model(tmp_path, model, meta, version="v1")
    with open(tmp_path / "v1" / MODEL_FILE, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(RiskpipeError, match="model v1: model.skops does not match its signature"):
        load_model(tmp_path, "v1")


def test_incompatible_features_are_refused(tmp_path, fitted):
    tmp_path = tmp_path / "models"
    _, model, meta = fitted
    save_model(tmp_path, model, meta, version="v1")
    with pytest.raises(RiskpipeError, match="needs features not built.*f_cat"):
        load_model(tmp_path, "v1", feature_schema={"f_x": pl.Float64})
    with pytest.raises(RiskpipeError, match="changed type.*f_x"):
        load_model(tmp_path, "v1", feature_schema={"f_x": pl.String, "f_cat": pl.Enum(["a"])})


def test_untrusted_types_are_refused_at_save_and_at_load(tmp_path, fitted):
    _, _, meta = fitted
    models = tmp_path / "models"
    with pytest.raises(RiskpipeError, match="fractions.Fraction"):
        save_model(models, {"x": Fraction(1, 3)}, meta, version="evil")
    assert list_versions(models) == []
    # written past save_model and signed with the registry's own key: the types still refuse it
    _plant(models, "evil", sio.dumps({"x": Fraction(1, 3)}), meta, sign=True)
    with pytest.raises(RiskpipeError, match="outside the reviewed list.*fractions.Fraction"):
        load_model(models, "evil")


def test_champion_must_exist_and_decisions_append(tmp_path, fitted):
    tmp_path = tmp_path / "models"
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


# ---------------------------------------------------------------------------------------------
# attacks on the registry (issue 12): each writes model folders as an attacker with write access
# to models/ would, recomputing the sha256 that meta.json records
# ---------------------------------------------------------------------------------------------
def _forge_sha(folder: Path) -> None:
    """What an attacker does after changing model.skops: record its new sha256 in meta.json."""
    meta = json.loads((folder / META_FILE).read_text())
    meta["sha256"] = hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest()
    (folder / META_FILE).write_text(json.dumps(meta))


def _plant(models: Path, version: str, data: bytes, meta: dict, sign: bool = False) -> Path:
    """A model folder written past ``save_model`` (optionally signed with the registry key, as an
    insider holding the key could): the load-time checks alone must refuse a bad file."""
    folder = models / version
    folder.mkdir(parents=True)
    (folder / MODEL_FILE).write_bytes(data)
    full = {
        **meta,
        "version": version,
        "format_version": 1,
        "artifact": MODEL_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (folder / META_FILE).write_text(json.dumps(full, default=str))
    if sign:
        from riskpipe.registry import sign_version

        sign_version(models, version)
    return folder


class _Touch:
    """Unpickling this creates ``path``: proof that code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _evil_model(model, tmp_path: Path):
    """The issue's attack: the calibrator's ``iso_`` is a TransformedTargetRegressor whose inverse
    function is ``functools.partial(numpy.load, "aux.npy", allow_pickle=True)``; scoring unpickles
    aux.npy, which creates the marker file."""
    import copy

    from sklearn.compose import TransformedTargetRegressor
    from sklearn.isotonic import IsotonicRegression

    marker = tmp_path / "PWNED"
    aux = tmp_path / "aux.npy"
    aux.write_bytes(pickle.dumps(_Touch(marker)))
    ttr = TransformedTargetRegressor(regressor=IsotonicRegression(out_of_bounds="clip"))
    ttr.fit(np.arange(10.0), np.arange(10.0))
    ttr.transformer_.inverse_func = functools.partial(np.load, str(aux), allow_pickle=True)
    evil = copy.deepcopy(model)
    evil.calibrator_.iso_ = ttr
    evil.calibrator_.method_ = "isotonic"
    return evil, marker


def test_attack_numpy_load_in_a_calibrator_is_refused_despite_a_recomputed_sha256(tmp_path, fitted):
    frame, model, meta = fitted
    models = tmp_path / "models"
    save_model(models, model, meta, version="v1")
    set_champion(models, "v1")
    evil, marker = _evil_model(model, tmp_path)
    (models / "v1" / MODEL_FILE).write_bytes(sio.dumps(evil))
    _forge_sha(models / "v1")
    try:
        with pytest.raises(RiskpipeError, match="v1.*signature"):
            loaded = load_model(models)
            loaded.model.predict_risk(frame.head(5))  # what the nightly would do next
    finally:
        assert not marker.exists(), "the model file ran code"


def test_attack_file_is_refused_by_its_types_even_when_signed(tmp_path, fitted):
    frame, model, meta = fitted
    models = tmp_path / "models"
    save_model(models, model, meta, version="v1")  # creates the registry key
    evil, marker = _evil_model(model, tmp_path)
    _plant(models, "v2", sio.dumps(evil), meta, sign=True)
    with pytest.raises(RiskpipeError, match=r"v2.*outside the reviewed list.*(functools.partial|numpy.load)"):
        load_model(models, "v2").model.predict_risk(frame.head(5))
    assert not marker.exists()
    # and save_model never writes such a file
    with pytest.raises(RiskpipeError, match="function|outside the reviewed list"):
        save_model(models, evil, meta, version="v3")
    assert not (models / "v3").exists()


def test_tampered_model_with_a_forged_sha256_is_refused(tmp_path, fitted):
    import copy

    frame, model, meta = fitted
    models = tmp_path / "models"
    save_model(models, model, meta, version="v1")
    reversed_ranking = copy.deepcopy(model)  # pure data, only trusted types: a quiet sabotage
    reversed_ranking.calibrator_.a_ = -abs(model.calibrator_.a_)
    (models / "v1" / MODEL_FILE).write_bytes(sio.dumps(reversed_ranking))
    _forge_sha(models / "v1")
    with pytest.raises(RiskpipeError, match="model v1: meta.json does not match its signature"):
        load_model(models, "v1")


def test_tampered_meta_is_refused(tmp_path, fitted):
    _, model, meta = fitted
    models = tmp_path / "models"
    save_model(models, model, meta, version="v1")
    saved = json.loads((models / "v1" / META_FILE).read_text())
    saved["baseline"]["f_x"] = 99.0  # changes every reason the nightly gives
    (models / "v1" / META_FILE).write_text(json.dumps(saved))
    with pytest.raises(RiskpipeError, match="model v1: meta.json does not match its signature"):
        load_model(models, "v1")


def test_swapped_version_folders_are_refused(tmp_path, fitted):
    """A signature binds the version name: an older signed model cannot stand in for another."""
    import shutil

    _, model, meta = fitted
    models = tmp_path / "models"
    save_model(models, model, meta, version="v1")
    save_model(models, model, {**meta, "n_train": 1}, version="v2")
    shutil.rmtree(models / "v2")
    shutil.copytree(models / "v1", models / "v2")
    with pytest.raises(RiskpipeError, match="model v2"):
        load_model(models, "v2")


@pytest.mark.parametrize("pointer", ["../outside/v1", "..", "/abs/v1", "a/b", "v1/../v1", "", ".hidden", 7])
def test_champion_must_name_a_folder_inside_the_registry(tmp_path, fitted, pointer):
    _, model, meta = fitted
    models = tmp_path / "models"
    save_model(models, model, meta, version="v1")
    save_model(tmp_path / "outside", model, meta, version="v1")  # a valid model, elsewhere
    (models / CHAMPION_FILE).write_text(json.dumps({"version": pointer}))
    with pytest.raises(RiskpipeError, match="not a model version"):
        load_model(models)
    with pytest.raises(RiskpipeError, match="not a model version"):
        champion_version(models)


@pytest.mark.parametrize("version", ["../x", "/tmp/x", "a/b", ".."])
def test_load_and_save_refuse_version_names_with_separators(tmp_path, fitted, version):
    _, model, meta = fitted
    with pytest.raises(RiskpipeError, match="not a model version"):
        load_model(tmp_path / "models", version)
    with pytest.raises(RiskpipeError, match="not a model version"):
        save_model(tmp_path / "models", model, meta, version=version)


# ---------------------------------------------------------------------------------------------
# what a model file may hold, and the registry key
# ---------------------------------------------------------------------------------------------
def test_freshly_trained_models_hold_only_reviewed_types_and_load(tmp_path):
    """Every kind of model riskpipe trains (trees over numeric, categorical and high-cardinality
    codes, the linear partner, sigmoid / isotonic / identity calibration, the cascade's first
    stage) saves with no function reference and loads with identical predictions."""
    from riskpipe.modelfile import MODEL_NODES, model_nodes

    rng = np.random.default_rng(1)
    n = 1200
    x = rng.random(n)
    frame = pl.DataFrame(
        {
            S.SHIPMENT_ID: [f"s{i}" for i in range(n)],
            "f_x": x,
            "f_int": rng.integers(0, 5, n),
            "f_flag": rng.random(n) < 0.5,
            "f_cat": pl.Series(["a", "b", None] * (n // 3)).cast(pl.Enum(["a", "b"])),
            "f_code": [f"c{i % 300}" if i % 11 else None for i in range(n)],
            S.IS_POSITIVE: ((x > 0.85) | (rng.random(n) < 0.02)).astype(np.int8),
        }
    )
    from riskpipe.estimator import TabularRiskClassifier

    models = tmp_path / "models"
    variants = [
        dict(calibration="sigmoid"),
        dict(calibration="isotonic", linear_weight=0.0),
        dict(calibration="sigmoid", calib=False),
    ]
    for i, v in enumerate(variants):
        est = TabularRiskClassifier(random_state=0, max_iter=15, min_samples_leaf=5, max_categories=10)
        calib = frame.tail(400) if v.pop("calib", True) else None
        model, meta = fit_risk_model(frame.head(800), calib, estimator=est, **v)
        version = save_model(models, model, meta, version=f"v{i}")
        found = model_nodes((models / version / MODEL_FILE).read_bytes())
        loaders = {loader for loader, _ in found}
        assert not loaders & {"FunctionNode", "PartialNode", "MethodNode", "OperatorFuncNode"}, found
        assert all(t in MODEL_NODES.get(loader, ()) for loader, t in found), found - {
            (lo, t) for lo, ts in MODEL_NODES.items() for t in ts
        }
        loaded = load_model(models, version)
        np.testing.assert_array_equal(loaded.model.predict_risk(frame), model.predict_risk(frame))
        if calib is not None:
            np.testing.assert_array_equal(
                loaded.model.predict_risk_cascade(frame, 0.1), model.predict_risk_cascade(frame, 0.1)
            )


def test_registry_key_is_private_outside_models_and_created_once(tmp_path, fitted):
    from riskpipe.signing import default_key_path

    _, model, meta = fitted
    models = tmp_path / "models"
    save_model(models, model, meta, version="v1")
    key = default_key_path(models)
    assert key == tmp_path / ".riskpipe" / "registry.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    first = key.read_bytes()
    save_model(models, model, meta, version="v2")
    assert key.read_bytes() == first
    assert not any(p.name.endswith(".key") for p in models.rglob("*"))
    with pytest.raises(RiskpipeError, match="inside the model registry"):
        save_model(models, model, meta, version="v3", key_path=models / "registry.key")


def test_a_model_signed_with_another_key_or_without_the_key_is_refused(tmp_path, fitted):
    _, model, meta = fitted
    models = tmp_path / "models"
    save_model(models, model, meta, version="v1")
    other = tmp_path / "elsewhere" / "registry.key"
    save_model(tmp_path / "m2", model, meta, version="v1", key_path=other)
    with pytest.raises(RiskpipeError, match="another registry key"):
        load_model(tmp_path / "m2", "v1")
    os.remove(tmp_path / ".riskpipe" / "registry.key")
    with pytest.raises(RiskpipeError, match="registry key .* not found"):
        load_model(models, "v1")


def test_unsigned_older_model_is_refused_and_trust_resigns_it(tmp_path, fitted):
    """A model saved before signing (a raw skops dump with HGB's partial(check_array), sha256 in
    meta.json, no signature): refused with the way out; ``trust_model`` re-saves it signed as a new
    version, moves the champion pointer and records the decision."""
    from riskpipe.registry import trust_model

    frame, model, meta = fitted
    models = tmp_path / "models"
    _plant(models, "m20250101T000000000000Z", sio.dumps(model), meta)
    set_champion(models, "m20250101T000000000000Z")
    with pytest.raises(RiskpipeError, match="not signed.*riskpipe models trust m20250101T000000000000Z"):
        load_model(models)
    new = trust_model(models, "m20250101T000000000000Z")
    assert new != "m20250101T000000000000Z" and champion_version(models) == new
    loaded = load_model(models)
    assert loaded.meta["trusted_from"] == "m20250101T000000000000Z"
    np.testing.assert_array_equal(loaded.model.predict_risk(frame), model.predict_risk(frame))
    assert read_decisions(models)[-1]["challenger_version"] == new
    # a signed model is not re-trusted, and an unsigned tampered or code-carrying one is refused
    with pytest.raises(RiskpipeError, match="already signed"):
        trust_model(models, new)
    evil, _ = _evil_model(model, tmp_path)
    _plant(models, "old2", sio.dumps(evil), meta)
    with pytest.raises(RiskpipeError, match="outside the reviewed list"):
        trust_model(models, "old2")
    _plant(models, "old3", sio.dumps(model), meta)
    (models / "old3" / MODEL_FILE).write_bytes(sio.dumps(model) + b"\0")
    with pytest.raises(RiskpipeError, match="sha256"):
        trust_model(models, "old3")


def test_champion_state_tells_a_fresh_home_from_a_broken_pointer(tmp_path, fitted):
    from riskpipe.registry import champion_state

    _, model, meta = fitted
    models = tmp_path / "models"
    fresh = champion_state(models)
    assert fresh.model is None and not fresh.registered and "no champion" in fresh.problem
    save_model(models, model, meta, version="v1")
    set_champion(models, "v1")
    ok = champion_state(models)
    assert ok.model is not None and ok.problem is None and ok.model.version == "v1"
    (models / CHAMPION_FILE).write_text("{not json")
    broken = champion_state(models)
    assert broken.model is None and broken.registered and "champion.json" in broken.problem
    (models / CHAMPION_FILE).write_text(json.dumps({"version": "v9"}))
    missing = champion_state(models)
    assert missing.registered and "v9" in missing.problem


def test_json_default_turns_numpy_scalars_dates_and_paths_into_json_values():
    """Decision and meta records hold numpy scalars from metrics: ``item()`` gives the Python
    value (the SupportsItem protocol); anything else unknown is refused, not stringified."""
    assert _json_default(np.float64(0.25)) == 0.25 and type(_json_default(np.float64(0.25))) is float
    assert _json_default(np.int64(3)) == 3 and type(_json_default(np.int64(3))) is int
    assert _json_default(np.bool_(True)) is True
    assert _json_default(date(2026, 1, 15)) == "2026-01-15"
    assert _json_default(Path("models") / "m1") == "models/m1"
    assert json.loads(json.dumps({"k": np.float32(0.5)}, default=_json_default)) == {"k": 0.5}
    with pytest.raises(TypeError, match="not JSON serialisable: Fraction"):
        _json_default(Fraction(1, 3))
