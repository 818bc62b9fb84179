"""Scoring held-out days with every scorer and the baselines, for retraining's comparison.

Builds each day's features as production does (labels known before the day), scores them with
the given scorers plus ``rules`` and ``random``, and reports them with
``riskpipe.model.evaluate.evaluate_scored``. Reads no ground truth: a caller that has some (the
evaluation package, on a synthetic world) passes a ``truth`` reader that adds the truth view.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from typing import Any

import numpy as np
import polars as pl

from riskpipe import schema as S
from riskpipe.cutoff import day_cutoff
from riskpipe.model import Scorer
from riskpipe.model.evaluate import FRACTIONS, SLICE_COLUMNS, _score_col, evaluate_scored
from riskpipe.rank import port_slots
from riskpipe.store import Layout, scan_raw_shipments
from riskpipe.training import day_features

#: (days) -> rows (shipment_id, true_positive) of those days, or None: an evaluation-only source
TruthReader = Callable[[Sequence[date]], pl.DataFrame | None]


def capacity_by_day(raw_ports: pl.DataFrame, settings: Any, capacity: int | None = None) -> dict[date, int]:
    """Total exam slots per arrival day (``rank.port_slots`` of the ports present that day)."""
    out = {}
    counts = raw_ports.group_by(S.ARRIVAL_DATE, S.PORT_OF_ENTRY).len()
    for (day,), part in counts.group_by(S.ARRIVAL_DATE):
        out[day] = sum(
            port_slots(dict(zip(part[S.PORT_OF_ENTRY], part["len"], strict=False)), settings, capacity).values()
        )
    return out


def random_scorer(seed: int) -> Callable[[pl.DataFrame], np.ndarray]:
    """Uniform random scores fixed by (seed, shipment_id): the random-selection baseline."""

    def score(frame: pl.DataFrame) -> np.ndarray:
        h = frame[S.SHIPMENT_ID].hash(seed=seed).to_numpy()
        return (h % (1 << 53)).astype(np.float64) / float(1 << 53)

    return score


def evaluate_models(
    layout: Layout,
    settings: Any,
    labels: pl.DataFrame,
    eval_days: Sequence[date],
    scorers: dict[str, Scorer],
    *,
    rules: Any = None,
    truth: TruthReader | None = None,
    capacity: int | None = None,
    fractions: Sequence[float] = FRACTIONS,
    builder: Any = None,
    random_exam_days: Sequence[date] = (),
    keep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every shipment of ``eval_days`` with each scorer (plus ``rules`` and ``random``),
    then report them all on the same days (see ``evaluate_scored``). ``random_exam_days``: more
    days for the random-exam view only (random exams are about 1 % of parcels, so a few days hold
    almost no positives; retraining adds its calibration days).

    A scorer gets the day's features joined with its raw columns and ``rule_score`` and returns
    one score per row. ``labels`` is the current label view (the outcomes of the evaluation days
    are read from it; features see only labels before each day). ``keep``: a dict that receives
    the scored rows (``scored``, one ``score__<name>`` column per scorer) and the day capacities
    (``capacity``), for estimates beyond the report (``riskpipe.promotion``). ``truth``: an
    evaluation-only reader of true outcomes (``riskpipe.evaluation.truth``) for the truth view.
    """
    parts = []
    located = labels.select(S.SHIPMENT_ID, S.is_positive_expr(), pl.col(S.EXAM_REASON).cast(pl.String)).unique(
        S.SHIPMENT_ID, keep="last"
    )
    ports = []
    all_days = sorted(set(eval_days) | set(random_exam_days))
    for day in all_days:
        feats = day_features(layout, day, labels, builder=builder)
        raw = scan_raw_shipments(layout, [day], as_of=day_cutoff(day)).collect()  # as its night knew it
        ports.append(raw.select(S.ARRIVAL_DATE, pl.col(S.PORT_OF_ENTRY).cast(pl.String)))
        joined = raw.join(
            feats.drop([c for c in feats.columns if c in raw.columns and c != S.SHIPMENT_ID]),
            on=S.SHIPMENT_ID,
            how="inner",
        )
        joined = joined.with_columns(rule_scores(rules, joined))
        scores = {"rules": joined[S.RULE_SCORE].to_numpy() + 1e-9 * random_scorer(settings.seed + 1)(joined)}
        scores["random"] = random_scorer(settings.seed)(joined)
        for name, fn in scorers.items():
            scores[name] = np.asarray(fn(joined), dtype=float)
        part = joined.select(
            S.ARRIVAL_DATE, S.SHIPMENT_ID, *[pl.col(c).cast(pl.String) for c in SLICE_COLUMNS if c in joined.columns]
        ).with_columns([pl.Series(_score_col(n), v) for n, v in scores.items()])
        parts.append(part)
    scored = pl.concat(parts, how="vertical_relaxed").join(located, on=S.SHIPMENT_ID, how="left")
    truth_rows = truth(all_days) if truth is not None else None
    if truth_rows is not None:
        scored = scored.join(truth_rows, on=S.SHIPMENT_ID, how="left")
    names = [n for n in scorers] + ["rules", "random"]
    caps = capacity_by_day(pl.concat(ports), settings, capacity)
    view_days = {"labelled": list(eval_days), "truth": list(eval_days), "random_exams": all_days}
    if keep is not None:
        keep.update(scored=scored, capacity=caps)
    return evaluate_scored(scored, names, caps, fractions, view_days=view_days)


def rule_scores(rules: Any, joined: pl.DataFrame) -> list[pl.Series]:
    """``rule_score`` and ``rule_floor_score`` of each row (0 everywhere without rules)."""
    if rules is None or joined.is_empty():
        zeros = np.zeros(joined.height)
        return [pl.Series(S.RULE_SCORE, zeros), pl.Series(S.RULE_FLOOR_SCORE, zeros)]
    applied = rules.apply(joined)
    if S.RULE_FLOOR_SCORE not in applied.columns:
        applied = applied.with_columns(pl.lit(None, dtype=pl.Float64).alias(S.RULE_FLOOR_SCORE))
    hits = joined.select(S.SHIPMENT_ID).join(
        applied.select(S.SHIPMENT_ID, S.RULE_SCORE, S.RULE_FLOOR_SCORE),
        on=S.SHIPMENT_ID,
        how="left",
        maintain_order="left",
    )
    return [hits[c].cast(pl.Float64).fill_null(0.0).clip(0.0, 1.0) for c in (S.RULE_SCORE, S.RULE_FLOOR_SCORE)]
