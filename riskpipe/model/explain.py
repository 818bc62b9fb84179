"""Explanation: what drives a model's score, by occlusion (each feature reset to its usual value).

The baseline and "high" values are learned at fit time and stored in the model's metadata; the
scoring step (``riskpipe.score``) turns the largest drops into reason codes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import polars as pl

from riskpipe.model import RiskModel, Scorer, _is_categorical


def feature_baseline(X: pl.DataFrame, features: list[str]) -> dict[str, Any]:
    """Each feature's usual value: median (numeric) or most frequent (categorical/boolean)."""
    out: dict[str, Any] = {}
    for c in features:
        s = X[c]
        dt = s.dtype
        if _is_categorical(dt) or dt == pl.Boolean:
            mode = s.drop_nulls().cast(pl.String).mode().sort()
            value = mode[0] if len(mode) else None
            out[c] = (value == "true") if dt == pl.Boolean and value is not None else value
        elif dt.is_temporal():
            out[c] = None
        else:
            med = cast("float | None", s.cast(pl.Float64).median())  # Float64 median: float or None
            out[c] = None if med is None or math.isnan(med) else float(med)
    return out


def feature_high(X: pl.DataFrame, features: list[str], q: float = 0.9) -> dict[str, float]:
    """The ``q`` quantile of numeric features: above it a value counts as unusually high."""
    out = {}
    for c in features:
        dt = X.schema[c]
        if dt.is_numeric():
            v = X[c].cast(pl.Float64).quantile(q)
            if v is not None and not math.isnan(v):
                out[c] = float(v)
    return out


def reset_expr(column: str, value: Any, dtype: pl.DataType) -> pl.Expr:
    """``column`` set to its baseline value for every row (the occlusion of one feature)."""
    if value is None:
        return pl.lit(None, dtype=dtype).alias(column)
    if isinstance(dtype, pl.Enum):
        return pl.lit(str(value)).cast(dtype).alias(column)
    return pl.lit(value).cast(dtype).alias(column)


def occlusion_drops(predict: Scorer, X: pl.DataFrame, baseline: dict[str, Any], features: Sequence[str]) -> np.ndarray:
    """(n, len(features)): the drop in predicted probability when each feature is reset to its
    baseline. All variants are scored in one stacked call (fast for a few thousand rows)."""
    n = X.height
    if n == 0 or not features:
        return np.zeros((n, len(features)))
    base = predict(X)
    variants = [X.with_columns(reset_expr(f, baseline.get(f), X.schema[f])) for f in features]
    stacked = predict(pl.concat(variants, how="vertical"))
    return base[None, :].repeat(len(features), 0).T - stacked.reshape(len(features), n).T


def feature_importance(
    model: RiskModel, X: pl.DataFrame, y: np.ndarray, baseline: dict[str, Any], seed: int = 0, max_rows: int = 2000
) -> dict[str, float]:
    """Mean occlusion drop over positives (or all rows if none): what drives high scores."""
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(y == 1)
    if idx.size == 0:
        idx = np.arange(X.height)
    if idx.size > max_rows:
        idx = rng.choice(idx, max_rows, replace=False)
    sample = X[np.sort(idx)]
    drops = occlusion_drops(model.predict_risk, sample, baseline, model.feature_columns_)
    return {f: float(v) for f, v in zip(model.feature_columns_, drops.mean(axis=0), strict=False)}
