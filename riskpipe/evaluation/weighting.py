"""What weighting the random exams by their inverse selection probability changes, in three views.

One training set (the home's labels, the production time split: train, calibration, evaluation
days), two fits: unweighted (every labelled row counts 1) and weighted
(``riskpipe.training.selection_weights``: a random exam counts 1 / its selection probability).
Both are judged on the same evaluation days in the labelled view (examined shipments: biased
towards what was targeted), the random-exam view (unbiased but tiny: about 1 % of the parcels, a
handful of positives, often none) and the ground-truth view (a synthetic world only).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from riskpipe import schema as S
from riskpipe.evaluation.truth import truth_reader
from riskpipe.holdout import evaluate_models
from riskpipe.model import SAMPLE_WEIGHT
from riskpipe.model.fit import fit_risk_model, time_split
from riskpipe.store import Layout
from riskpipe.training import build_training_set, labelled_days

VIEWS = ("labelled", "random_exams", "truth")


def weighting_comparison(
    layout: Layout, settings: Any, labels: pl.DataFrame, *, capacity: int | None = None
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One row per (view, model) with the view's rows and positives and each fit's precision /
    recall / hits at capacity and PR-AUC; and the training set's weight summary."""
    located = labelled_days(layout, labels)
    train_days, cal_days, ev_days = time_split(located[S.ARRIVAL_DATE].unique().to_list())
    data = build_training_set(layout, labels, train_days + cal_days, weighted=True)
    train = data.filter(pl.col(S.ARRIVAL_DATE).is_in(train_days))
    calib = data.filter(pl.col(S.ARRIVAL_DATE).is_in(cal_days)).drop(SAMPLE_WEIGHT)
    plain, _ = fit_risk_model(train.drop(SAMPLE_WEIGHT), calib, seed=settings.seed)
    weighted, meta = fit_risk_model(train, calib, seed=settings.seed)
    report = evaluate_models(
        layout,
        settings,
        labels,
        ev_days,
        {"unweighted": plain.predict_risk, "weighted": weighted.predict_risk},
        truth=truth_reader(layout),
        capacity=capacity,
        random_exam_days=cal_days,
    )
    rows = []
    for view in VIEWS:
        if view not in report["views"]:
            continue
        base = report["base_rates"][view]
        for name in ("unweighted", "weighted"):
            m = report["views"][view][name]
            rows.append(
                {
                    "view": view,
                    "model": name,
                    "days": len(base["days"]),
                    "rows": base["n"],
                    "positives": base["positives"],
                    "hits_at_capacity": m["hits_at_capacity"],
                    "selected_at_capacity": m["selected_at_capacity"],
                    "precision_at_capacity": m["precision_at_capacity"],
                    "recall_at_capacity": m["recall_at_capacity"],
                    "pr_auc": m["pr_auc"],
                }
            )
    info = {
        "train_days": [train_days[0], train_days[-1]],
        "eval_days": [ev_days[0], ev_days[-1]],
        "sample_weights": meta.get("sample_weights"),
        "random_rows": int((train[S.EXAM_REASON].cast(pl.String) == "random").sum()),
        "random_positives": int(
            train.filter(pl.col(S.EXAM_REASON).cast(pl.String) == "random")[S.IS_POSITIVE].cast(pl.Int64).sum()
        ),
    }
    return pl.DataFrame(rows), info
