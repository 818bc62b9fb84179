"""Retraining: a challenger against the champion on the same later labelled days.

The workflow above the registry (``riskpipe.registry`` stores models; this module decides which
one becomes champion). Decisions use labelled outcomes only (``DECISION_VIEW``); ground truth is
never read here: an evaluation caller on a synthetic world may pass ``truth`` (a reader from
``riskpipe.evaluation.truth``) to add the truth view to the recorded figures.
"""

from __future__ import annotations

from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

from riskpipe import promotion
from riskpipe import schema as S
from riskpipe.decisions import RetrainDecision, operator_name, record_decision
from riskpipe.errors import RiskpipeError
from riskpipe.features import build_features
from riskpipe.holdout import TruthReader, evaluate_models
from riskpipe.labels import LabelStore
from riskpipe.model.card import headline_metrics
from riskpipe.model.evaluate import evaluation_table
from riskpipe.model.fit import fit_linear, fit_risk_model, time_split
from riskpipe.registry import (
    DECISION_VIEW,
    LoadedModel,
    _champion_or_none,
    champion_state,
    check_features,
    save_model,
    set_champion,
)
from riskpipe.rules import load_rules, rules_file
from riskpipe.runsteps import Steps
from riskpipe.score import blend
from riskpipe.store import Layout
from riskpipe.training import build_training_set, labelled_days, published_probabilities

#: hits at capacity over the evaluation days by which the interval's lower bound must exceed 0
#: (None in ``retrain``: the setting ``promotion_margin``)
DEFAULT_MARGIN = 0.0


def retrain(
    layout: Layout,
    settings: Any,
    until: date | None = None,
    *,
    labels: Any = None,
    rules: Any = None,
    use_rules: bool = True,
    estimator: Any = None,
    margin: float | None = None,
    min_positives: int | None = None,
    eval_days: int | None = None,
    calib_days: int | None = None,
    builder: Any = None,
    truth: TruthReader | None = None,
    promote: bool = True,
    unexamined_share: float = 0.0,
    force: bool = False,
    weighted: bool | None = None,
) -> RetrainDecision:
    """Train a challenger on labelled days up to ``until``, evaluate it, the champion and the
    baselines on the same latest labelled days, and promote the challenger only on evidence
    (``riskpipe.promotion``): at least ``min_positives`` labelled positives on those days
    (setting ``promotion_min_positives``) and a paired bootstrap interval of challenger - champion
    doubly robust hits at capacity whose lower bound exceeds ``margin`` hits (setting
    ``promotion_margin``). A first model is promoted. ``force`` promotes anyway, audited as
    ``forced-promote`` with the evidence. The decision is appended to ``decisions.jsonl``; the
    challenger is saved either way, its model card holding the evidence.

    ``labels`` defaults to the label store at ``settings.db_url``; ``rules`` to the configured
    rules file (``use_rules=False``: none); ``estimator`` to ``TabularRiskClassifier``. Reads no
    ground truth: ``truth`` (evaluation callers on a synthetic world only) adds a truth view to the
    recorded figures, never to the decision.

    A fresh registry (no ``champion.json``) promotes its first model. When ``champion.json``
    exists but the champion cannot be used (pointer unreadable, model missing, unsigned, tampered
    or needing other features), nothing can be compared, so retraining is refused before it
    starts unless ``force`` (then the challenger is promoted and the reason says why).

    ``weighted`` (default: the setting ``training_selection_weights`` if any, else False) trains
    with random exams weighted by their inverse selection probability
    (``riskpipe.training.selection_weights``).
    """
    if weighted is None:
        weighted = settings.training_selection_weights
    steps = Steps("retrain")  # step boundaries for whoever watches (the CLI's progress rows)
    steps.next("champion")
    models_dir = Path(settings.models_dir)
    key_path = getattr(settings, "registry_key_path", None)
    state = champion_state(models_dir, key_path)
    if state.registered and state.model is None and not force:
        raise RiskpipeError(
            f"retrain: {state.problem}; refusing to promote a challenger without comparing it "
            "(repair the champion, or rerun with --force to promote without comparison)"
        )
    steps.next("labels")
    if labels is None:
        labels = LabelStore(settings.db_url).current(until)
    elif until is not None:
        labels = labels.filter(pl.col(S.EXAM_DATE) <= until)
    if rules is None and use_rules:
        rules = load_rules(rules_file(settings))
    steps.next("training-set")
    if builder is None and settings.partner_key_path is not None:  # the key as the caller loaded it
        builder = partial(build_features, partner_key_path=settings.partner_key_path)
    located = labelled_days(layout, labels, until)
    if located.is_empty():
        raise RiskpipeError("no labelled shipments to train on: import exam outcomes first (riskpipe labels import)")
    train_days, cal_days, ev_days = time_split(located[S.ARRIVAL_DATE].unique().to_list(), eval_days, calib_days)
    data = build_training_set(
        layout,
        labels,
        train_days + cal_days,
        builder=builder,
        unexamined_share=unexamined_share,
        seed=settings.seed,
        weighted=weighted,
    )
    train = data.filter(pl.col(S.ARRIVAL_DATE).is_in(train_days))
    # calibrate on examined shipments only: the probability is that of a finding if examined
    calib = data.filter(pl.col(S.ARRIVAL_DATE).is_in(cal_days) & pl.col(S.EXAM_REASON).is_not_null())
    steps.next("fit")
    model, meta = fit_risk_model(train, calib, estimator=estimator, seed=settings.seed)
    linear = fit_linear(train, model.feature_columns_)
    challenger = LoadedModel(version="challenger", model=model, meta=meta)

    champion: LoadedModel | None = state.model
    current = champion.version if champion is not None else _champion_or_none(models_dir)
    champion_note = f" (forced: {state.problem})" if state.registered and champion is None else ""
    if champion is not None:
        try:
            check_features(champion.meta, meta["feature_schema"], champion.version)
        except RiskpipeError as exc:
            if not force:
                raise RiskpipeError(
                    f"retrain: {exc}: the challenger cannot be compared with it; rerun with --force to "
                    "promote the challenger without comparison"
                ) from None
            champion, champion_note = None, f" (forced: champion {current} not usable: {exc})"

    def production(m: LoadedModel):
        return lambda joined: blend(
            m.model.predict_risk(joined),
            joined[S.RULE_SCORE].to_numpy(),
            floor_score=joined[S.RULE_FLOOR_SCORE].to_numpy(),
        )

    steps.next("evaluate")
    scorers = {
        "model": production(challenger),
        "model_alone": lambda joined: model.predict_risk(joined),
        "linear": lambda joined: linear.predict_risk(joined),
    }
    if champion is not None:
        scorers["champion"] = production(champion)
    # random exams are ~1 % of parcels: their view also covers the calibration days (the model
    # never trained on them; calibration is monotone and only rescales its probability)
    scored: dict[str, Any] = {}
    report = evaluate_models(
        layout,
        settings,
        labels,
        ev_days,
        scorers,
        rules=rules,
        truth=truth,
        builder=builder,
        random_exam_days=cal_days,
        keep=scored,
    )
    view = report["views"][DECISION_VIEW]
    ch_score = view["model"]["precision_at_capacity"]
    champ_score = view["champion"]["precision_at_capacity"] if champion is not None else None
    margin = float(getattr(settings, "promotion_margin", DEFAULT_MARGIN) if margin is None else margin)
    if min_positives is None:
        min_positives = int(getattr(settings, "promotion_min_positives", 10))
    evidence = None
    if champion is not None:
        # both policies on the same later days; the outcome model of the doubly robust estimate
        # is the mean of their production scores (it changes the variance, not the expectation)
        # exploration rows of the published lists carry their own selection probability
        with_p = scored["scored"].join(published_probabilities(layout, ev_days), on=S.SHIPMENT_ID, how="left")
        picked = promotion.select_at_capacity(with_p, ["model", "champion"], scored["capacity"]).with_columns(
            ((pl.col("score__model") + pl.col("score__champion")) / 2).alias("_q")
        )
        evidence = promotion.estimate(
            picked, "selected__model", "selected__champion", "_q", ev_days, seed=settings.seed
        )

    meta = {
        **meta,
        "training_window": {
            "until": until,
            "train_start": train_days[0],
            "train_end": train_days[-1],
            "calib_start": cal_days[0],
            "calib_end": cal_days[-1],
            "eval_start": ev_days[0],
            "eval_end": ev_days[-1],
        },
        "metrics": report,
        "headline_metrics": headline_metrics(report),
        "rule_blend": "max(p, 0.05 * rule_score if rule_score >= 0.6 else 0.001 * rule_score)",
    }
    steps.next("save")
    forced = False
    if champion is None and champion_note:
        promoted, forced = True, True
        reason = "no usable champion: challenger promoted without comparison" + champion_note
    elif champion is None:
        promoted = True
        reason = "no champion yet: first model promoted"
    else:
        assert evidence is not None  # estimated above whenever there is a champion
        promoted, reason = promotion.decide(evidence, min_positives, margin)
        if not promoted and force:
            promoted, forced = True, True
            reason = f"forced promotion by {operator_name()} (retrain --force) despite: {reason}"
    if evidence is not None:
        meta["promotion"] = {
            **evidence.as_dict(),
            "min_positives": min_positives,
            "margin": margin,
            "promoted": promoted and promote,
            "forced": forced,
            "reason": reason,
        }
    version = save_model(models_dir, model, meta, key_path=key_path)
    if champion is not None and champion.meta.get("training_window", {}).get("calib_end", "") >= ev_days[0].isoformat():
        reason += " (note: the champion was trained on days overlapping the evaluation days)"
    if promoted and promote:
        set_champion(models_dir, version)
    decision = RetrainDecision(
        promoted=promoted and promote,
        challenger_version=version,
        champion_version=current,
        reason=reason,
        challenger_score=ch_score,
        champion_score=champ_score,
        margin=margin,
        eval_days=[d.isoformat() for d in ev_days],
        table=evaluation_table(report),
        report=report,
        action="forced-promote" if forced and promoted and promote else "retrain",
        evidence=evidence.as_dict() if evidence is not None else None,
        min_positives=min_positives,
        forced=forced,
    )
    record_decision(models_dir, decision)
    steps.end()
    return decision
