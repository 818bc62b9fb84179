"""Issue 13: a model trained or calibrated on too few positives, or whose calibration fell back,
says so in its metadata, its model card, the nightly report and on the retrain CLI."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from riskpipe import schema as S
from riskpipe.decisions import RetrainDecision
from riskpipe.model import MIN_CALIB_POSITIVES, MIN_TRAIN_POSITIVES, ProbabilityCalibrator
from riskpipe.model.card import model_card
from riskpipe.model.fit import fit_risk_model, training_warnings
from riskpipe.registry import META_FILE, save_model
from riskpipe.report import render_report


def _frame(n: int, positives: int, seed: int) -> pl.DataFrame:
    """``positives`` rows with a high ``f_x``; the rest low (a signal even a few rows can learn)."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, dtype=np.int8)
    y[rng.choice(n, positives, replace=False)] = 1
    x = np.where(y == 1, rng.uniform(0.7, 1.0, n), rng.uniform(0.0, 0.8, n))
    return pl.DataFrame({S.SHIPMENT_ID: [f"s{seed}-{i}" for i in range(n)], "f_x": x, S.IS_POSITIVE: y})


def _fit(train: pl.DataFrame, calib: pl.DataFrame | None, calibration: str = "sigmoid"):
    from riskpipe.estimator import TabularRiskClassifier

    est = TabularRiskClassifier(random_state=0, max_iter=10, min_samples_leaf=5, early_stopping=False)
    with threadpool_limits(1):
        return fit_risk_model(train, calib, estimator=est, calibration=calibration, linear_weight=0.0)


def test_few_positives_warn_in_meta_and_card(tmp_path: Path) -> None:
    model, meta = _fit(_frame(300, 8, 0), _frame(150, 2, 1))
    assert (meta["n_train_positive"], meta["n_calib_positive"]) == (8, 2)
    assert meta["calibration"] == "sigmoid" and meta["calibration_fallback"] is None  # fitted, but on 2
    assert meta["warnings"] == [
        f"trained on 8 positive(s), fewer than {MIN_TRAIN_POSITIVES}: its ranking and importances rest on too few findings",
        f"calibrated on 2 positive(s), fewer than {MIN_CALIB_POSITIVES}: its probabilities are not reliable",
    ]
    version = save_model(tmp_path, model, meta, version="v1")
    card = (tmp_path / version / "model_card.md").read_text()
    assert "**Warnings.**" in card
    assert "- trained on 8 positive(s), fewer than 20" in card
    assert "- calibrated on 2 positive(s), fewer than 5" in card
    assert "calibration rows: 150 (2 positive)" in card
    assert json.loads((tmp_path / version / META_FILE).read_text())["warnings"] == meta["warnings"]


def test_enough_positives_no_warning() -> None:
    _, meta = _fit(_frame(400, MIN_TRAIN_POSITIVES, 0), _frame(200, MIN_CALIB_POSITIVES + 3, 1))
    assert meta["warnings"] == []
    assert "**Warnings.**" not in model_card(meta)


@pytest.mark.parametrize(
    ("calib", "calibration", "reason"),
    [
        (None, "sigmoid", "no calibration rows"),
        (_frame(100, 0, 1), "sigmoid", "0 positive(s) among 100 calibration rows: both classes are needed"),
        (_frame(100, 0, 1), "isotonic", "0 positive(s) among 100 calibration rows: both classes are needed"),
    ],
)
def test_calibration_fallback_is_recorded(calib, calibration, reason) -> None:
    _, meta = _fit(_frame(400, 30, 0), calib, calibration)
    assert meta["calibration"] == "identity"
    assert meta["calibration_requested"] == calibration
    assert meta["calibration_fallback"] == reason
    assert f"{calibration} calibration fell back to identity (uncalibrated log-odds): {reason}" in meta["warnings"]
    assert reason in model_card(meta)


def test_calibrator_says_why_it_kept_identity() -> None:
    raw, y = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0]), np.array([0, 0, 0, 1, 1, 1])
    reversed_ = ProbabilityCalibrator("sigmoid").fit(raw, y)
    assert reversed_.method_ == "identity"
    assert reversed_.fallback_.startswith("the fitted sigmoid slope -") and "reverse the ranking" in reversed_.fallback_
    fitted = ProbabilityCalibrator("sigmoid").fit(-raw, y)
    assert (fitted.method_, fitted.fallback_) == ("sigmoid", None)
    assert ProbabilityCalibrator("isotonic").fit(-raw, y).fallback_ is None


def test_older_metadata_without_the_reason_still_warns() -> None:
    old = {"n_train_positive": 40, "n_calib_positive": 9, "calibration": "identity"}
    assert training_warnings(old) == ["calibration is identity (uncalibrated log-odds)"]
    assert training_warnings({**old, "calibration": "sigmoid"}) == []
    assert "**Warnings.**" in model_card(old)


def _report(model_warnings) -> str:
    scores = pl.DataFrame({S.SHIPMENT_ID: ["a"], S.RISK_SCORE: [0.5]})
    targets = pl.DataFrame(
        {
            S.RANK: [1],
            S.SHIPMENT_ID: ["a"],
            S.PORT_OF_ENTRY: ["4701"],
            S.RISK_SCORE: [0.5],
            S.SELECTION: ["risk"],
            S.REASON_TEXT: [""],
            S.DESCRIPTION: ["x"],
            S.COUNTRY_OF_ORIGIN: ["CN"],
            S.NETWORK_ID: [None],
        }
    )
    raw = pl.DataFrame({S.MODE: ["express"], S.PORT_OF_ENTRY: ["4701"]})
    return render_report(
        date(2026, 1, 5), scores, targets, raw, {}, "v1", None, [], "now", model_warnings=model_warnings
    )


def test_report_model_section_shows_the_warnings() -> None:
    html = _report(["trained on 8 positive(s), fewer than 20: <few>"])
    section = html[html.index("<h2>Model health</h2>") :]
    assert "Model warnings" in section
    assert "<li>trained on 8 positive(s), fewer than 20: &lt;few&gt;</li>" in section  # escaped
    assert "Model warnings" not in _report(())


def test_retrain_cli_prints_the_challengers_warnings(tmp_path: Path, monkeypatch) -> None:
    import riskpipe.retrain
    from riskpipe.cli import app

    _, meta = _fit(_frame(300, 8, 0), None)
    save_model(tmp_path / "models", _fit(_frame(300, 8, 0), None)[0], meta, version="v7")

    def fake_retrain(layout, settings, until, force=False, truth=None):
        return RetrainDecision(
            promoted=True,
            challenger_version="v7",
            champion_version=None,
            reason="first model",
            eval_days=["2026-01-05"],
            table=pl.DataFrame({"model": ["model"], "precision_at_capacity": [0.5]}),
            report={"preferred_view": "labelled", "views": {}, "base_rates": {}},
        )

    monkeypatch.setattr(riskpipe.retrain, "retrain", fake_retrain)
    monkeypatch.setattr("riskpipe.preflight.check_retrain", lambda *a, **k: None)  # no raw store here
    result = CliRunner().invoke(app, ["--home", str(tmp_path), "retrain"])
    assert result.exit_code == 0, result.output
    assert "warning: challenger v7 trained on 8 positive(s), fewer than 20" in result.output
    assert (
        "warning: challenger v7 sigmoid calibration fell back to identity (uncalibrated log-odds): no calibration rows"
        in result.output
    )
