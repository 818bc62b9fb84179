"""The adaptation study: a closed-loop simulation on a synthetic world (truth becomes labels)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.evaluation.truth import read_truth
from riskpipe.model.evaluate import TRUE_POSITIVE
from riskpipe.model.fit import fit_risk_model
from riskpipe.rank import rank_day
from riskpipe.registry import LoadedModel
from riskpipe.score import join_raw_features, score_frame
from riskpipe.store import Layout, scan_raw_shipments
from riskpipe.training import attach_labels, day_features


def adaptation_study(
    layout: Layout,
    settings: Any,
    labels: pl.DataFrame,
    *,
    warmup_days: int = 14,
    retrain_every: int = 7,
    exploration_shares: Sequence[float] = (0.0, 0.1),
    policies: Sequence[str] = ("static", "weekly"),
    rules: Any = None,
    estimator: Any = None,
    capacity: int | None = None,
) -> pl.DataFrame:
    """Recall at capacity per day when targeting feeds its own labels back, on a synthetic world.

    The first ``warmup_days`` use the world's own exam outcomes (``labels``) to train a first
    model. Then, day by day, each policy scores and ranks the day (``rank_day`` with the given
    exploration share), "examines" the selected shipments (outcome = ground truth, so this is
    evaluation code), adds those outcomes to its own labels, and either never retrains
    (``static``) or retrains every ``retrain_every`` days (``weekly``) on everything it has
    labelled. Each day's features see only that policy's labels before the day. ``capacity``
    overrides the total exams a day (a small world with the default port table examines a large
    share of its shipments, which hides the differences).

    Returns one row per (policy, exploration_share, day): ``shipments``, ``positives`` (truth),
    ``found`` (in the list), ``selected``, ``recall_at_capacity``, ``precision_at_capacity``.
    """
    days = [d for d in layout.raw_days() if (layout.partition(layout.truth, d) / "truth.parquet").exists()]
    if len(days) <= warmup_days + 1:
        raise RiskpipeError(
            f"adaptation study: need more than {warmup_days + 1} days with ground truth, found {len(days)}"
        )
    warm, sim = days[:warmup_days], days[warmup_days:]
    located = labels.select(S.SHIPMENT_ID, S.EXAM_DATE, S.OUTCOME, S.EXAM_REASON)
    arrivals = scan_raw_shipments(layout, warm).select(S.SHIPMENT_ID).collect()
    boot = located.filter(pl.col(S.EXAM_DATE) < sim[0]).join(arrivals, on=S.SHIPMENT_ID, how="semi")
    warm_feats = {d: day_features(layout, d, labels, cache=False) for d in warm}

    def train(feats: dict[date, pl.DataFrame], known: pl.DataFrame) -> LoadedModel:
        ordered = sorted(feats)
        n_cal = max(1, len(ordered) // 5)
        parts = [attach_labels(feats[d], d, known) for d in ordered]
        data = pl.concat([p for p in parts if p.height], how="vertical_relaxed")
        cal_days = set(ordered[-n_cal:])
        fitted, meta = fit_risk_model(
            data.filter(~pl.col(S.ARRIVAL_DATE).is_in(cal_days)),
            data.filter(pl.col(S.ARRIVAL_DATE).is_in(cal_days)),
            estimator=estimator,
            seed=settings.seed,
        )
        return LoadedModel(version=f"sim-{ordered[-1].isoformat()}", model=fitted, meta=meta)

    first = train(warm_feats, boot)
    truth_all = {d: read_truth(layout, [d]) for d in sim}
    rows = []
    for share in exploration_shares:
        run_settings = settings.model_copy(update={"exploration_share": share})
        for policy in policies:
            known, feats, model = boot, dict(warm_feats), first
            for i, day in enumerate(sim):
                if policy == "weekly" and i > 0 and i % retrain_every == 0:
                    model = train(feats, known)
                today = day_features(layout, day, known, cache=False)
                raw = scan_raw_shipments(layout, [day]).collect()
                scores = score_frame(join_raw_features(raw, today), model, rules, top_n=0)
                targets = rank_day(scores, raw, run_settings, capacity=capacity, texts={})
                truth = truth_all[day]
                if truth is None:  # the days were chosen for their truth files: one went missing since
                    raise RiskpipeError(f"adaptation study: the ground truth of {day} disappeared during the study")
                picked = targets.select(S.SHIPMENT_ID, S.SELECTION).join(truth, on=S.SHIPMENT_ID, how="left")
                found = int(picked[TRUE_POSITIVE].fill_null(0).sum())
                positives = int(truth[TRUE_POSITIVE].sum())
                rows.append(
                    {
                        "policy": policy,
                        "exploration_share": share,
                        "day": day,
                        "model_version": model.version,
                        "shipments": raw.height,
                        "positives": positives,
                        "selected": targets.height,
                        "found": found,
                        "recall_at_capacity": found / positives if positives else 0.0,
                        "precision_at_capacity": found / targets.height if targets.height else 0.0,
                    }
                )
                outcomes = pl.read_parquet(
                    layout.partition(layout.truth, day) / "truth.parquet", columns=[S.SHIPMENT_ID, S.TRUE_CLASS]
                )
                new = (
                    targets.select(S.SHIPMENT_ID, S.SELECTION)
                    .join(outcomes, on=S.SHIPMENT_ID, how="left")
                    .select(
                        S.SHIPMENT_ID,
                        pl.lit(day, dtype=pl.Date).alias(S.EXAM_DATE),
                        pl.col(S.TRUE_CLASS).fill_null("no_finding").cast(S.Outcome).alias(S.OUTCOME),
                        pl.when(pl.col(S.SELECTION) == "exploration")
                        .then(pl.lit("random"))
                        .otherwise(pl.lit("targeted"))
                        .cast(S.ExamReason)
                        .alias(S.EXAM_REASON),
                    )
                )
                known = pl.concat([known, new], how="vertical_relaxed")
                feats[day] = today
    return pl.DataFrame(rows)


def adaptation_summary(study: pl.DataFrame, weeks: int = 7) -> pl.DataFrame:
    """Recall at capacity per policy and exploration share, per week of the simulation (with the
    week's shipments, truth positives and selected exams, so the prevalence and capacity show)."""
    first_day = study["day"].min()
    return (
        study.with_columns(((pl.col("day") - first_day).dt.total_days() // weeks + 1).alias("week"))
        .group_by("policy", "exploration_share", "week")
        .agg(
            pl.col("found").sum(),
            pl.col("positives").sum(),
            (pl.col("found").sum() / pl.col("positives").sum()).alias("recall_at_capacity"),
            *[pl.col(c).sum() for c in ("shipments", "selected") if c in study.columns],
        )
        .sort("exploration_share", "policy", "week")
    )
