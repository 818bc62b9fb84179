"""The adaptation study: a closed-loop simulation on a synthetic world (truth becomes labels).

Each arm of the study is a way of running the loop (``Arm``): never retrained or retrained
weekly, its exploration share, the share of exploration drawn by novelty
(``riskpipe.model.novelty``; the rest uniform) and whether training weights the exploration
exams by their inverse selection probability (``riskpipe.training.selection_weights``). The new
scheme of a world (a scheme with no positive in the warm-up days, e.g. the synthetic world's
``precursor_in`` from 60 % of the run) is followed on its own: when it first appears, when an
arm first finds it, and how much of it each arm finds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.errors import RiskpipeError
from riskpipe.evaluation.truth import read_truth_day
from riskpipe.model.evaluate import TRUE_POSITIVE
from riskpipe.model.fit import fit_risk_model
from riskpipe.model.novelty import novelty_scores
from riskpipe.rank import rank_day
from riskpipe.registry import LoadedModel
from riskpipe.score import join_raw_features, score_frame
from riskpipe.store import Layout, scan_raw_shipments
from riskpipe.training import attach_labels, day_features, selection_weights


@dataclass(frozen=True)
class Arm:
    """One way of running the loop."""

    policy: str  # "static" (never retrained), "weekly" (every ``retrain_every`` days) or "daily"
    exploration_share: float
    novelty_share: float = 0.0  # share of the exploration drawn by novelty (0: all uniform)
    weighted: bool = False  # exploration exams weighted by 1 / selection probability in training
    weight_cap: float | None = None  # clip of those weights (None: pure inverse probability)

    @property
    def name(self) -> str:
        if self.exploration_share == 0:
            kind = "no exploration"
        elif self.novelty_share > 0:
            kind = f"{self.exploration_share:.0%} exploration, {self.novelty_share:.0%} of it by novelty"
        else:
            kind = f"{self.exploration_share:.0%} uniform exploration"
        cap = f" (capped at {self.weight_cap:g})" if self.weight_cap is not None else ""
        return f"{self.policy}, {kind}" + (f", weighted{cap}" if self.weighted else "")


def new_schemes(truth_by_day: dict[date, pl.DataFrame], warm: Sequence[date]) -> set[str]:
    """Schemes with positives in the simulated days and none in the warm-up days."""
    seen: set[str] = set()
    for d in warm:
        frame = truth_by_day.get(d)
        if frame is not None:
            seen |= set(frame.filter(pl.col(TRUE_POSITIVE) == 1)[S.SCHEME].drop_nulls().to_list())
    later: set[str] = set()
    for d, frame in truth_by_day.items():
        if d not in warm:
            later |= set(frame.filter(pl.col(TRUE_POSITIVE) == 1)[S.SCHEME].drop_nulls().to_list())
    return later - seen


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
    arms: Sequence[Arm] | None = None,
) -> pl.DataFrame:
    """Recall at capacity per day when targeting feeds its own labels back, on a synthetic world.

    The first ``warmup_days`` use the world's own exam outcomes (``labels``) to train a first
    model. Then, day by day, each arm scores and ranks the day (``rank_day`` with its
    exploration share and novelty share), "examines" the selected shipments (outcome = ground
    truth, so this is evaluation code), adds those outcomes to its own labels (exploration picks
    as random exams with their recorded selection probability), and either never retrains
    (``static``), retrains every ``retrain_every`` days (``weekly``) or every day (``daily``) on
    everything it has labelled. Each day's features see only that arm's labels before the day. ``capacity``
    overrides the total exams a day. ``arms`` defaults to every (exploration share, policy).

    Returns one row per (arm, day): ``policy``, ``exploration_share``, ``novelty_share``,
    ``weighted``, ``arm``, ``shipments``, ``positives`` (truth), ``found`` (in the list),
    ``top_found`` (in the top rows of the same scores, as many as the list: without ports and
    exploration),
    ``selected``, ``explored``, ``recall_at_capacity``, ``precision_at_capacity`` and, for the
    schemes new after the warm-up (``new_schemes``), ``new_scheme_positives`` and
    ``new_scheme_found``.
    """
    days = [d for d in layout.raw_days() if (layout.partition(layout.truth, d) / "truth.parquet").exists()]
    if len(days) <= warmup_days + 1:
        raise RiskpipeError(
            f"adaptation study: need more than {warmup_days + 1} days with ground truth, found {len(days)}"
        )
    if arms is None:
        arms = [Arm(policy, share) for share in exploration_shares for policy in policies]
    warm, sim = days[:warmup_days], days[warmup_days:]
    located = labels.select(S.SHIPMENT_ID, S.EXAM_DATE, S.OUTCOME, S.EXAM_REASON).with_columns(
        pl.lit(None, dtype=pl.Float64).alias(S.SELECTION_PROBABILITY)
    )
    arrivals = scan_raw_shipments(layout, warm).select(S.SHIPMENT_ID).collect()
    boot = located.filter(pl.col(S.EXAM_DATE) < sim[0]).join(arrivals, on=S.SHIPMENT_ID, how="semi")
    warm_feats = {d: day_features(layout, d, labels, cache=False) for d in warm}

    def train(feats: dict[date, pl.DataFrame], known: pl.DataFrame, arm: Arm) -> LoadedModel:
        ordered = sorted(feats)
        n_cal = max(1, len(ordered) // 5)
        parts = [attach_labels(feats[d], d, known) for d in ordered]
        data = pl.concat([p for p in parts if p.height], how="vertical_relaxed")
        if arm.weighted:
            data = selection_weights(data, {d: feats[d].height for d in ordered}, max_weight=arm.weight_cap)
        cal_days = set(ordered[-n_cal:])
        fitted, meta = fit_risk_model(
            data.filter(~pl.col(S.ARRIVAL_DATE).is_in(cal_days)),
            data.filter(pl.col(S.ARRIVAL_DATE).is_in(cal_days)),
            estimator=estimator,
            seed=settings.seed,
        )
        return LoadedModel(version=f"sim-{ordered[-1].isoformat()}", model=fitted, meta=meta)

    firsts: dict[tuple[bool, float | None], LoadedModel] = {}
    for a in arms:
        if (a.weighted, a.weight_cap) not in firsts:
            firsts[(a.weighted, a.weight_cap)] = train(warm_feats, boot, a)
    truth_all: dict[date, pl.DataFrame] = {}
    for d in days:
        frame = read_truth_day(layout, d)
        if frame is None:  # the days were chosen for their truth files: one went missing since
            raise RiskpipeError(f"adaptation study: the ground truth of {d} disappeared during the study")
        truth_all[d] = frame
    fresh = new_schemes(truth_all, warm)
    rows = []
    for arm in arms:
        run_settings = settings.model_copy(update={"exploration_share": arm.exploration_share})
        known, feats, model = boot, dict(warm_feats), firsts[(arm.weighted, arm.weight_cap)]
        for i, day in enumerate(sim):
            if i > 0 and (arm.policy == "daily" or (arm.policy == "weekly" and i % retrain_every == 0)):
                model = train(feats, known, arm)
            today = day_features(layout, day, known, cache=False)
            raw = scan_raw_shipments(layout, [day]).collect()
            joined = join_raw_features(raw, today)
            scores = score_frame(joined, model, rules, top_n=0)
            if arm.novelty_share > 0:
                scores = scores.join(
                    joined.select(S.SHIPMENT_ID).with_columns(novelty_scores(model.model, joined)),
                    on=S.SHIPMENT_ID,
                    how="left",
                )
            targets = rank_day(scores, raw, run_settings, capacity=capacity, texts={}, novelty_share=arm.novelty_share)
            truth = truth_all[day]
            picked = targets.select(S.SHIPMENT_ID, S.SELECTION, S.SELECTION_PROBABILITY).join(
                truth, on=S.SHIPMENT_ID, how="left"
            )
            found = int(picked[TRUE_POSITIVE].fill_null(0).sum())
            # the same nights' scores without the list mechanics (ports, exploration): the top rows
            top = (
                scores.select(S.SHIPMENT_ID, S.RISK_SCORE)
                .sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False], nulls_last=True)
                .head(targets.height)
            )
            top_found = int(top.join(truth, on=S.SHIPMENT_ID, how="left")[TRUE_POSITIVE].fill_null(0).sum())
            positives = int(truth[TRUE_POSITIVE].sum())
            is_new = pl.col(S.SCHEME).is_in(sorted(fresh)) & (pl.col(TRUE_POSITIVE) == 1)
            rows.append(
                {
                    "policy": arm.policy,
                    "exploration_share": arm.exploration_share,
                    "novelty_share": arm.novelty_share,
                    "weighted": arm.weighted,
                    "arm": arm.name,
                    "day": day,
                    "model_version": model.version,
                    "shipments": raw.height,
                    "positives": positives,
                    "selected": targets.height,
                    "explored": int((targets[S.SELECTION] == "exploration").sum()),
                    "found": found,
                    "top_found": top_found,
                    "new_scheme_positives": int(truth.filter(is_new).height),
                    "new_scheme_found": int(picked.filter(is_new).height),
                    "recall_at_capacity": found / positives if positives else 0.0,
                    "precision_at_capacity": found / targets.height if targets.height else 0.0,
                }
            )
            new = picked.select(
                S.SHIPMENT_ID,
                pl.lit(day, dtype=pl.Date).alias(S.EXAM_DATE),
                pl.col(S.TRUE_CLASS).fill_null("no_finding").cast(S.Outcome).alias(S.OUTCOME),
                pl.when(pl.col(S.SELECTION) == "exploration")
                .then(pl.lit("random"))
                .otherwise(pl.lit("targeted"))
                .cast(S.ExamReason)
                .alias(S.EXAM_REASON),
                pl.when(pl.col(S.SELECTION) == "exploration")
                .then(pl.col(S.SELECTION_PROBABILITY))
                .otherwise(None)
                .cast(pl.Float64)
                .alias(S.SELECTION_PROBABILITY),
            )
            known = pl.concat([known, new], how="vertical_relaxed")
            feats[day] = today
    return pl.DataFrame(rows)


ARM_KEYS = ("policy", "exploration_share", "novelty_share", "weighted", "arm")


def _keys(study: pl.DataFrame) -> list[str]:
    return [k for k in ARM_KEYS if k in study.columns]


def _with_week(study: pl.DataFrame, weeks: int) -> pl.DataFrame:
    first_day = study["day"].min()
    return study.with_columns(((pl.col("day") - first_day).dt.total_days() // weeks + 1).alias("week"))


def adaptation_summary(study: pl.DataFrame, weeks: int = 7) -> pl.DataFrame:
    """Recall at capacity per arm, per week of the simulation (with the week's shipments, truth
    positives and selected exams, so the prevalence and capacity show)."""
    sums = [c for c in ("shipments", "selected", "new_scheme_positives", "new_scheme_found") if c in study.columns]
    return (
        _with_week(study, weeks)
        .group_by(*_keys(study), "week")
        .agg(
            pl.col("found").sum(),
            pl.col("positives").sum(),
            (pl.col("found").sum() / pl.col("positives").sum()).alias("recall_at_capacity"),
            *[pl.col(c).sum() for c in sums],
        )
        .sort(
            "exploration_share",
            "policy",
            *[k for k in ("novelty_share", "weighted", "arm") if k in study.columns],
            "week",
        )
    )


def scheme_discovery(study: pl.DataFrame, last_days: int = 14) -> pl.DataFrame:
    """Per arm: the day the new scheme first had a positive, the first day the arm's list found
    one and the days between (null: never found), the new scheme's found / positives, the
    cumulative recall and the recall of the last ``last_days`` simulated days (and, with
    ``top_found``, that of the top rows of the same nights' scores: the list mechanics cost is
    the difference)."""
    last = sorted(study["day"].unique().to_list())[-last_days:]
    appeared = study.filter(pl.col("new_scheme_positives") > 0)["day"].min()
    return (
        study.group_by(_keys(study), maintain_order=True)
        .agg(
            pl.lit(appeared, dtype=pl.Date).alias("new_scheme_appeared"),
            pl.col("day").filter(pl.col("new_scheme_found") > 0).min().alias("new_scheme_first_found"),
            pl.col("new_scheme_found").sum(),
            pl.col("new_scheme_positives").sum(),
            (pl.col("found").sum() / pl.col("positives").sum()).alias("cumulative_recall"),
            (
                pl.col("found").filter(pl.col("day").is_in(last)).sum()
                / pl.col("positives").filter(pl.col("day").is_in(last)).sum()
            ).alias("recall_last_days"),
            *(
                [
                    (
                        pl.col("top_found").filter(pl.col("day").is_in(last)).sum()
                        / pl.col("positives").filter(pl.col("day").is_in(last)).sum()
                    ).alias("top_recall_last_days")
                ]
                if "top_found" in study.columns
                else []
            ),
        )
        .with_columns(
            (pl.col("new_scheme_first_found") - pl.col("new_scheme_appeared")).dt.total_days().alias("days_to_find")
        )
    )


def learnability_ceiling(
    layout: Layout,
    settings: Any,
    labels: pl.DataFrame,
    capacities: Sequence[int],
    *,
    last_days: int = 14,
    retrain_every: int = 7,
    estimator: Any = None,
) -> pl.DataFrame:
    """Recall of the top ``capacity`` rows a day over the last ``last_days`` days of a synthetic
    world, for a model trained on the ground truth of EVERY shipment of the earlier days
    (retrained every ``retrain_every`` days, as the loop is): what the features can rank with
    full supervision, the ceiling of a closed loop that learns only from its own exams.

    The features are the ones the nightly would build with ``labels`` (the home's exam
    outcomes); the training target is the truth. One row per capacity: ``capacity``,
    ``shipments``, ``positives``, ``found``, ``recall``."""
    days = [d for d in layout.raw_days() if (layout.partition(layout.truth, d) / "truth.parquet").exists()]
    if len(days) <= last_days + 2:
        raise RiskpipeError(
            f"learnability ceiling: need more than {last_days + 2} days with ground truth, found {len(days)}"
        )
    truth: dict[date, pl.DataFrame] = {}
    for d in days:
        frame = read_truth_day(layout, d)
        if frame is None:
            raise RiskpipeError(f"learnability ceiling: the ground truth of {d} disappeared during the study")
        truth[d] = frame
    feats = {d: day_features(layout, d, labels, cache=False) for d in days}
    found = dict.fromkeys(capacities, 0)
    positives = shipments = 0
    model: LoadedModel | None = None
    for i, day in enumerate(days[-last_days:]):
        if model is None or i % retrain_every == 0:
            earlier = [d for d in days if d < day]
            data = pl.concat(
                [
                    feats[d]
                    .join(truth[d].select(S.SHIPMENT_ID, pl.col(TRUE_POSITIVE).alias(S.IS_POSITIVE)), on=S.SHIPMENT_ID)
                    .with_columns(pl.lit(d, dtype=pl.Date).alias(S.ARRIVAL_DATE))
                    for d in earlier
                ],
                how="vertical_relaxed",
            )
            cal = earlier[-max(1, len(earlier) // 5) :]
            fitted, meta = fit_risk_model(
                data.filter(~pl.col(S.ARRIVAL_DATE).is_in(cal)),
                data.filter(pl.col(S.ARRIVAL_DATE).is_in(cal)),
                estimator=estimator,
                seed=settings.seed,
            )
            model = LoadedModel(version=f"truth-{earlier[-1].isoformat()}", model=fitted, meta=meta)
        raw = scan_raw_shipments(layout, [day]).collect()
        scores = score_frame(join_raw_features(raw, feats[day]), model, None, top_n=0)
        ranked = (
            scores.select(S.SHIPMENT_ID, S.RISK_SCORE)
            .sort([S.RISK_SCORE, S.SHIPMENT_ID], descending=[True, False], nulls_last=True)
            .join(truth[day], on=S.SHIPMENT_ID, how="left", maintain_order="left")
        )
        hits = ranked[TRUE_POSITIVE].fill_null(0)
        for k in capacities:
            found[k] += int(hits.head(k).sum())
        positives += int(truth[day][TRUE_POSITIVE].sum())
        shipments += raw.height
    return pl.DataFrame(
        {
            "capacity": list(capacities),
            "shipments": [shipments] * len(capacities),
            "positives": [positives] * len(capacities),
            "found": [found[k] for k in capacities],
            "recall": [found[k] / positives if positives else 0.0 for k in capacities],
        }
    )
