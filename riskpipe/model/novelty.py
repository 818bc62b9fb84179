"""How little the model knows about a shipment: the weight of novelty-aware exploration.

Uniform exploration spends its exams where the shipments are, i.e. on ordinary trade; a scheme
that no label covers yet is found only by luck. Novelty-aware exploration (``riskpipe.rank``)
gives part of the exploration slots a chance proportional to this score, with the chance
recorded, so the off-policy estimates stay unbiased. The score is the mean of two parts, each
in [0, 1]:

- **disagreement**: ``|log-odds of the trees - log-odds of the linear partner|`` as a percentile
  of the day (two models that learnt from the same labels disagree where those labels say
  little); 0 for a model without a linear partner;
- **unseen parties**: 1 when the shipper and the seller have never been examined and the shipper
  was first seen within ``NEW_PARTY_DAYS`` days (or never before), else 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

NOVELTY = "novelty"
#: a shipper first seen this many days ago or less counts as new
NEW_PARTY_DAYS = 7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def disagreement(model: Any, frame: pl.DataFrame) -> np.ndarray:
    """|trees - linear| log-odds per row, as a percentile in [0, 1] (zeros without a partner)."""
    linear = getattr(model, "linear_", None)
    if linear is None or not frame.height:
        return np.zeros(frame.height)
    Xf = frame.select(model.feature_columns_)
    est = model.estimator_
    trees = (
        np.asarray(est.decision_function(Xf), dtype=float).ravel()
        if hasattr(est, "decision_function")
        else _logit(est.predict_proba(Xf)[:, 1])
    )
    gap = np.abs(trees - _logit(linear.predict_risk(frame)))
    return pl.Series(gap).rank("average").to_numpy() / len(gap)


def unseen_parties(frame: pl.DataFrame) -> np.ndarray:
    """1.0 where neither the shipper nor the seller was ever examined and the shipper is new."""
    cols = frame.columns

    def zero_or_null(c: str) -> pl.Expr:
        return pl.col(c).fill_null(0) == 0 if c in cols else pl.lit(True)

    new = (
        pl.col("hist_shipper_first_seen_days").fill_null(0) <= NEW_PARTY_DAYS
        if "hist_shipper_first_seen_days" in cols
        else pl.lit(True)
    )
    expr = zero_or_null("hist_shipper_prior_exams") & zero_or_null("hist_seller_prior_exams") & new
    return frame.select(expr.cast(pl.Float64).alias(NOVELTY)).to_series().to_numpy()


def novelty_scores(model: Any, frame: pl.DataFrame) -> pl.Series:
    """The novelty column of ``frame`` (feature rows of one day) under ``model`` (a fitted
    ``RiskModel``): the mean of the disagreement percentile and the unseen-parties flag."""
    score = 0.5 * disagreement(model, frame) + 0.5 * unseen_parties(frame)
    return pl.Series(NOVELTY, score, dtype=pl.Float64)
