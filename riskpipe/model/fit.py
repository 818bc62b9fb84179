"""Fitting: time splits, the calibrated risk model with its metadata, and the linear baseline.

Splits are by time only: the model learns from arrival days before the calibration slice, the
probability calibration is fitted on the next days, and evaluation uses the latest labelled days
that neither saw. No random split across days: tomorrow's smugglers are not in today's folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.model import (
    DEFAULT_LINEAR_WEIGHT,
    MIN_CALIB_POSITIVES,
    MIN_TRAIN_POSITIVES,
    SAMPLE_WEIGHT,
    LinearBaseline,
    RiskModel,
    default_estimator,
    feature_columns_of,
)
from riskpipe.model.explain import feature_baseline, feature_high, feature_importance


def _all_missing(s: pl.Series) -> bool:
    """True when a training column holds no value at all (trees cannot bin it)."""
    if s.dtype.is_float():
        s = s.fill_nan(None)
    return s.null_count() == s.len()


def time_split(
    days: Sequence[date], eval_days: int | None = None, calib_days: int | None = None
) -> tuple[list[date], list[date], list[date]]:
    """(train, calibration, evaluation) days in time order: evaluation last, calibration before."""
    days = sorted(set(days))
    n = len(days)
    if n < 3:
        raise RiskpipeError(f"need labelled shipments on at least 3 arrival days for a time split, found {n}")
    e = eval_days if eval_days is not None else min(7, max(1, n // 5))
    c = calib_days if calib_days is not None else min(7, max(1, n // 5))
    if e + c >= n:
        raise RiskpipeError(f"{n} labelled days cannot hold {e} evaluation + {c} calibration days and training")
    return days[: n - e - c], days[n - e - c : n - e], days[n - e :]


def fit_risk_model(
    train: pl.DataFrame,
    calib: pl.DataFrame | None = None,
    feature_columns: list[str] | None = None,
    *,
    estimator: Any = None,
    calibration: str = "sigmoid",
    seed: int = 0,
    linear_weight: float = DEFAULT_LINEAR_WEIGHT,
) -> tuple[RiskModel, dict[str, Any]]:
    """Fit the model on ``train``, calibrate it on ``calib``; return it and its metadata
    (features, schema, baselines, importances, row counts) for the registry."""
    candidates = feature_columns or feature_columns_of(train)
    features = [c for c in candidates if not _all_missing(train[c])]
    y = train[S.IS_POSITIVE].cast(pl.Int64).to_numpy()
    if y.sum() == 0 or y.sum() == y.size:
        raise RiskpipeError(f"training data has {int(y.sum())} positives out of {y.size} rows: both classes are needed")
    est = estimator if estimator is not None else default_estimator(seed)
    model = RiskModel(est, features, calibration, linear_weight)
    yc = calib[S.IS_POSITIVE].cast(pl.Int64).to_numpy() if calib is not None and calib.height else None
    # inverse selection probabilities (riskpipe.training.selection_weights) when the set has them
    weights = train[SAMPLE_WEIGHT].fill_null(1.0).to_numpy() if SAMPLE_WEIGHT in train.columns else None
    model.fit(train, y, calib if yc is not None else None, yc, sample_weight=weights)
    if calib is not None and yc is not None:
        model.fit_cascade(calib, yc)
    baseline = feature_baseline(train, features)
    meta = {
        "estimator": type(est).__name__
        + (f" + {linear_weight:g} x LinearBaseline (log-odds)" if linear_weight > 0 else ""),
        "calibration": model.calibrator_.method_,
        "feature_columns": features,
        "unused_all_missing": [c for c in candidates if c not in features],
        "feature_schema": {c: str(train.schema[c]) for c in features},
        "baseline": baseline,
        "high_value": feature_high(train, features),
        "importance": feature_importance(model, train, y, baseline, seed),
        "n_train": int(y.size),
        "n_train_positive": int(y.sum()),
        "n_calib": int(0 if yc is None else yc.size),
        "n_calib_positive": int(0 if yc is None else yc.sum()),
        "calibration_requested": calibration,
        "calibration_fallback": model.calibrator_.fallback_,
    }
    if weights is not None:
        meta["sample_weights"] = {
            "weighted_rows": int((weights != 1.0).sum()),
            "sum": float(weights.sum()),
            "max": float(weights.max()),
            "positive_sum": float(weights[y == 1].sum()),
        }
    stage1 = getattr(model, "calibrator_stage1_", None)
    if stage1 is not None and stage1.fallback_:
        meta["calibration_stage1_fallback"] = stage1.fallback_
    meta["warnings"] = training_warnings(meta)
    return model, meta


def training_warnings(meta: dict[str, Any]) -> list[str]:
    """What a model's metadata says should not be trusted: training on fewer than
    ``MIN_TRAIN_POSITIVES`` positives, calibration on fewer than ``MIN_CALIB_POSITIVES``, or a
    calibration that fell back to identity (older metadata without the reason: identity itself).
    One sentence each, for the CLI, the model card and the report."""
    out = []
    n_train = meta.get("n_train_positive")
    if isinstance(n_train, int) and n_train < MIN_TRAIN_POSITIVES:
        out.append(
            f"trained on {n_train} positive(s), fewer than {MIN_TRAIN_POSITIVES}: "
            "its ranking and importances rest on too few findings"
        )
    n_calib = meta.get("n_calib_positive")
    if isinstance(n_calib, int) and n_calib < MIN_CALIB_POSITIVES:
        out.append(
            f"calibrated on {n_calib} positive(s), fewer than {MIN_CALIB_POSITIVES}: its probabilities are not reliable"
        )
    requested = meta.get("calibration_requested", "sigmoid")
    if meta.get("calibration_fallback"):
        out.append(
            f"{requested} calibration fell back to identity (uncalibrated log-odds): {meta['calibration_fallback']}"
        )
    elif "calibration_fallback" not in meta and meta.get("calibration") == "identity":
        out.append("calibration is identity (uncalibrated log-odds)")
    if meta.get("calibration_stage1_fallback"):
        out.append(
            f"the first-stage (cascade) calibration fell back to identity: {meta['calibration_stage1_fallback']}"
        )
    return out


def fit_linear(train: pl.DataFrame, feature_columns: list[str] | None = None) -> LinearBaseline:
    features = feature_columns or feature_columns_of(train)
    return LinearBaseline(features).fit(train, train[S.IS_POSITIVE].cast(pl.Int64).to_numpy())
