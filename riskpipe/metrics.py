"""Ranking metrics for targeting lists: what an exam officer gets from the top of the list.

Officers examine the top of a ranked list, so the metrics that matter are precision, recall and
lift among the first ``k`` shipments (or the first ``frac`` of them), plus PR-AUC as a summary of
the whole ranking. Pure numpy; inputs may be lists, numpy arrays or Polars Series.

Conventions (documented once, used everywhere):

- Ranking: score descending; ties are broken by original position (the earlier row first), so
  every metric is deterministic. A NaN score ranks after every real score.
- ``k`` for a fraction: ``k = ceil(frac * n)`` (at least 1 when ``n > 0``, at most ``n``), so
  "the top 5 %" of 8,481 rows is 425 rows. Float noise is rounded away first (``0.07 * 100`` is
  7, not 8).
- A quantity that is undefined (recall with no positives, lift with a base rate of 0) is 0.0, as
  scikit-learn does with ``zero_division=0``; this keeps reports JSON-clean.
- Capacity at a multiple of the prevalence (``k_for_prevalence``): ``ceil(m * prevalence * n)``
  exams, so 1x is as many exams as there are positives; used for the headline figures because a
  fixed share of shipments means a different task at every prevalence.
- ``pr_auc`` is average precision computed like ``sklearn.metrics.average_precision_score``
  (tied scores form one threshold), so it does not depend on the tie-break.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

DEFAULT_FRACTIONS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10)


class AtCapacity(TypedDict):
    """The top ``k`` rows a capacity of ``k`` exams examines."""

    k: int
    precision: float
    recall: float
    lift: float


class RankingReport(TypedDict):
    """:func:`ranking_report`'s record (a JSON object in reports): per-fraction figures keyed by
    :func:`pct_key`."""

    n: int
    positives: int
    base_rate: float
    k_at: dict[str, int]
    precision_at: dict[str, float]
    recall_at: dict[str, float]
    lift_at: dict[str, float]
    pr_auc: float
    at_capacity: AtCapacity | None


def _arrays(y_true: ArrayLike, score: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Labels as 0/1 ints and scores as floats, checked for equal length."""
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=float)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError("metrics: y_true and score must be one-dimensional")
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"metrics: y_true has {y.shape[0]} rows but score has {s.shape[0]}")
    if y.dtype != bool:
        uniq = np.unique(y)
        if not np.isin(uniq, [0, 1]).all():
            raise ValueError(f"metrics: y_true must be 0/1 or boolean, found {uniq[:5].tolist()}")
    return y.astype(np.int64), s


def rank_order(score: ArrayLike) -> np.ndarray:
    """Row indices from the highest score to the lowest; ties keep the original order."""
    s = np.asarray(score, dtype=float)
    key = np.where(np.isnan(s), -np.inf, -s)  # NaN last (after -inf scores too: stable below)
    nan_last = np.isnan(s).astype(np.int8)
    return np.lexsort((np.arange(s.shape[0]), key, nan_last))


def k_for_fraction(n: int, frac: float) -> int:
    """Rows in the top ``frac`` of ``n``: ``ceil(frac * n)``, clipped to ``[1, n]`` (0 if n=0)."""
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"metrics: fraction must be in (0, 1], got {frac}")
    if n <= 0:
        return 0
    k = math.ceil(round(frac * n, 9))
    return min(max(k, 1), n)


def k_for_prevalence(n: int, prevalence: float, multiple: float) -> int:
    """Exams at a capacity of ``multiple`` x the prevalence among ``n`` shipments:
    ``ceil(multiple * prevalence * n)``, at most ``n``; 0 when the prevalence is 0 (nothing to find,
    nothing to judge). At 1x a perfect ranking finds every positive and nothing else."""
    if prevalence < 0 or multiple <= 0:
        raise ValueError(f"metrics: prevalence must be >= 0 and multiple > 0, got {prevalence}, {multiple}")
    if n <= 0 or prevalence == 0:
        return 0
    return min(math.ceil(round(multiple * prevalence * n, 9)), n)


def rates_at_k(hits: int, k: int, positives: int, base_rate: float) -> tuple[float, float, float]:
    """(precision, recall, lift) of a selection of ``k`` rows holding ``hits`` of ``positives``:
    the one place these ratios and their zero conventions are computed (every metric here and
    ``riskpipe.model.evaluate``'s per-view counts use it)."""
    precision = hits / k if k else 0.0
    recall = hits / positives if positives else 0.0
    lift = precision / base_rate if base_rate else 0.0
    return precision, recall, lift


def _hits_at_k(y: np.ndarray, s: np.ndarray, k: int) -> tuple[int, int]:
    """(positives among the top k, effective k)."""
    if k < 1:
        raise ValueError(f"metrics: k must be >= 1, got {k}")
    k = min(k, y.shape[0])
    top = rank_order(s)[:k]
    return int(y[top].sum()), k


def precision_at_k(y_true: ArrayLike, score: ArrayLike, k: int) -> float:
    """Share of positives among the ``k`` highest-scored rows (k larger than n means all rows)."""
    y, s = _arrays(y_true, score)
    if y.shape[0] == 0:
        return 0.0
    hits, k = _hits_at_k(y, s, k)
    return rates_at_k(hits, k, int(y.sum()), 0.0)[0]


def recall_at_k(y_true: ArrayLike, score: ArrayLike, k: int) -> float:
    """Share of all positives found among the ``k`` highest-scored rows (0.0 if no positives)."""
    y, s = _arrays(y_true, score)
    total = int(y.sum())
    if total == 0:
        return 0.0
    hits, k = _hits_at_k(y, s, k)
    return rates_at_k(hits, k, total, 0.0)[1]


def lift_at_k(y_true: ArrayLike, score: ArrayLike, k: int) -> float:
    """Precision at k over the base rate: how many times better than random selection."""
    y, s = _arrays(y_true, score)
    if y.shape[0] == 0 or y.sum() == 0:
        return 0.0
    hits, k = _hits_at_k(y, s, k)
    return rates_at_k(hits, k, int(y.sum()), float(y.mean()))[2]


def precision_at_frac(y_true: ArrayLike, score: ArrayLike, frac: float) -> float:
    """Precision among the top ``ceil(frac * n)`` rows."""
    y, s = _arrays(y_true, score)
    k = k_for_fraction(y.shape[0], frac)
    return precision_at_k(y, s, k) if k else 0.0


def recall_at_frac(y_true: ArrayLike, score: ArrayLike, frac: float) -> float:
    """Recall among the top ``ceil(frac * n)`` rows."""
    y, s = _arrays(y_true, score)
    k = k_for_fraction(y.shape[0], frac)
    return recall_at_k(y, s, k) if k else 0.0


def lift_at_frac(y_true: ArrayLike, score: ArrayLike, frac: float) -> float:
    """Lift among the top ``ceil(frac * n)`` rows."""
    y, s = _arrays(y_true, score)
    k = k_for_fraction(y.shape[0], frac)
    return lift_at_k(y, s, k) if k else 0.0


def pr_auc(y_true: ArrayLike, score: ArrayLike) -> float:
    """Average precision: sum over thresholds of (recall gain) x precision; tied scores are one
    threshold (same value as ``sklearn.metrics.average_precision_score``). 0.0 if no positives."""
    y, s = _arrays(y_true, score)
    total = int(y.sum())
    if total == 0:
        return 0.0
    s = np.where(np.isnan(s), -np.inf, s)
    order = np.argsort(-s, kind="stable")
    ys, ss = y[order], s[order]
    tp = np.cumsum(ys)
    # last index of each block of equal scores = one threshold
    last = np.r_[np.nonzero(np.diff(ss))[0], ys.shape[0] - 1]
    tp_t = tp[last].astype(float)
    precision = tp_t / (last + 1)
    recall = tp_t / total
    gain = np.diff(np.r_[0.0, recall])
    return float(np.sum(gain * precision))


def pct_key(frac: float) -> str:
    """0.05 -> "5", 0.005 -> "0.5": the key used in reports and JSON."""
    return f"{round(frac * 100, 6):g}"


def ranking_report(
    y_true: ArrayLike,
    score: ArrayLike,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    capacity: int | None = None,
) -> RankingReport:
    """Every ranking metric at once, keyed by percent strings ("1", "2", "5", "10").

    Returns ``{"n", "positives", "base_rate", "k_at", "precision_at", "recall_at", "lift_at",
    "pr_auc", "at_capacity"}``; ``at_capacity`` is ``{"k", "precision", "recall", "lift"}`` when
    a capacity (number of exams) is given, else None.
    """
    y, s = _arrays(y_true, score)
    n = int(y.shape[0])
    positives = int(y.sum())
    base = positives / n if n else 0.0
    order = rank_order(s)
    cum = np.cumsum(y[order])

    def at(k: int) -> tuple[float, float, float]:
        if k <= 0 or n == 0:
            return 0.0, 0.0, 0.0
        k = min(k, n)
        return rates_at_k(int(cum[k - 1]), k, positives, base)

    k_at: dict[str, int] = {}
    precision_at: dict[str, float] = {}
    recall_at: dict[str, float] = {}
    lift_at: dict[str, float] = {}
    for frac in fractions:
        key = pct_key(frac)
        k = k_for_fraction(n, frac)
        p, r, lift = at(k)
        k_at[key] = k
        precision_at[key] = p
        recall_at[key] = r
        lift_at[key] = lift
    at_capacity: AtCapacity | None = None
    if capacity is not None:
        if capacity < 0:
            raise ValueError(f"metrics: capacity must be >= 0, got {capacity}")
        k = min(capacity, n)
        p, r, lift = at(k)
        at_capacity = {"k": k, "precision": p, "recall": r, "lift": lift}
    return {
        "n": n,
        "positives": positives,
        "base_rate": base,
        "k_at": k_at,
        "precision_at": precision_at,
        "recall_at": recall_at,
        "lift_at": lift_at,
        "pr_auc": pr_auc(y, s),
        "at_capacity": at_capacity,
    }
