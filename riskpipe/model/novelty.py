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

from collections.abc import Iterable
from typing import Any

import numpy as np
import polars as pl

from riskpipe import schema as S

NOVELTY = "novelty"
#: the party-history features of the unseen-parties flag
PARTY_COLUMNS = ("hist_shipper_prior_exams", "hist_seller_prior_exams", "hist_shipper_first_seen_days")
#: a shipper first seen this many days ago or less counts as new
NEW_PARTY_DAYS = 7


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def disagreement_gap(model: Any, frame: pl.DataFrame) -> np.ndarray:
    """|trees - linear| log-odds per row (zeros without a linear partner): the raw part of
    :func:`disagreement`, so that a day read in batches can be ranked as one (the nightly)."""
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
    return np.abs(trees - _logit(linear.predict_risk(frame)))


def _percentile(gap: np.ndarray) -> np.ndarray:
    """Average rank / n in (0, 1]; empty stays empty."""
    return pl.Series(gap).rank("average").to_numpy() / len(gap) if len(gap) else np.zeros(0)


def disagreement(model: Any, frame: pl.DataFrame) -> np.ndarray:
    """|trees - linear| log-odds per row, as a percentile in [0, 1] (zeros without a partner)."""
    if getattr(model, "linear_", None) is None or not frame.height:
        return np.zeros(frame.height)
    return _percentile(disagreement_gap(model, frame))


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


def novelty_inputs(model: Any, available: list[str]) -> list[str]:
    """The feature columns :func:`novelty_scores` reads (of those ``available``): the model's
    inputs when it has a linear partner, and the party-history columns."""
    wanted = list(getattr(model, "feature_columns_", [])) if getattr(model, "linear_", None) is not None else []
    wanted += [c for c in PARTY_COLUMNS if c not in wanted]
    return [c for c in wanted if c in available]


def day_novelty(model: Any, batches: Iterable[pl.DataFrame]) -> pl.DataFrame:
    """``shipment_id`` and ``novelty`` of a whole day read as ``batches`` of feature rows (the
    nightly reads a large day in id ranges): the disagreement is ranked over the day, as
    :func:`novelty_scores` ranks it over one frame, so both give the same column."""
    ids: list[pl.Series] = []
    gaps: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    partner = getattr(model, "linear_", None) is not None
    for part in batches:
        ids.append(part.get_column(S.SHIPMENT_ID))
        gaps.append(disagreement_gap(model, part) if partner else np.zeros(part.height))
        flags.append(unseen_parties(part))
    if not ids:
        return pl.DataFrame(schema={S.SHIPMENT_ID: pl.String, NOVELTY: pl.Float64})
    gap = np.concatenate(gaps)
    score = 0.5 * (_percentile(gap) if partner else gap) + 0.5 * np.concatenate(flags)
    return pl.DataFrame({S.SHIPMENT_ID: pl.concat(ids), NOVELTY: pl.Series(score, dtype=pl.Float64)})
