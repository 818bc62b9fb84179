"""Training set, time-split fit, evaluation and retraining on a tiny hand-made world.

The feature builder here is a stand-in with the same signature as ``build_features`` (so these
tests do not depend on the indicator code): a planted signal, a noise column, a category and a
point-in-time count of earlier positive exams.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.model import evaluate_scored, evaluation_table, fit_risk_model, time_split
from riskpipe.registry import champion_version, load_model, read_decisions, retrain
from riskpipe.store import Layout, write_parquet_atomic
from riskpipe.training import build_training_set, day_features

START = date(2026, 1, 1)
DAYS = 12
PER_DAY = 400
CAT = pl.Enum(["a", "b"])


def fake_builder(layout: Layout, day: date, labels: pl.DataFrame) -> pl.DataFrame:
    raw = pl.read_parquet(layout.raw_shipments_day(day))
    known = labels.filter(pl.col(S.EXAM_DATE) < day)
    prior = known.select(S.is_positive_expr()).to_series().sum() if known.height else 0
    return raw.select(
        S.SHIPMENT_ID,
        pl.lit(None, dtype=pl.String).alias(S.NETWORK_ID),
        pl.col("x_signal").alias("f_signal"),
        pl.col("x_noise").alias("f_noise"),
        pl.col("x_cat").cast(CAT).alias("f_cat"),
        pl.lit(int(prior), dtype=pl.Int64).alias("f_prior_positives"),
    )


def make_world(home) -> tuple[Layout, pl.DataFrame]:
    layout = Layout(home)
    rng = np.random.default_rng(0)
    labels = []
    for i in range(DAYS):
        day = START + timedelta(days=i)
        sig = rng.random(PER_DAY)
        positive = sig > 0.95
        ids = [f"D{i:02d}-{j:04d}" for j in range(PER_DAY)]
        raw = pl.DataFrame(
            {
                S.SHIPMENT_ID: ids,
                S.ARRIVAL_DATE: [day] * PER_DAY,
                S.PORT_OF_ENTRY: ["4701" if j % 2 else "2720" for j in range(PER_DAY)],
                S.MODE: ["express" if j % 3 else "postal" for j in range(PER_DAY)],
                S.COUNTRY_OF_ORIGIN: ["CN" if j % 4 else "MX" for j in range(PER_DAY)],
                "x_signal": sig,
                "x_noise": rng.random(PER_DAY),
                "x_cat": ["a" if j % 2 else "b" for j in range(PER_DAY)],
            }
        )
        write_parquet_atomic(raw, layout.raw_shipments_day(day) / "part.parquet")
        truth = pl.DataFrame({S.SHIPMENT_ID: ids, S.TRUE_CLASS: np.where(positive, "precursor", "no_finding")})
        write_parquet_atomic(truth, layout.partition(layout.truth, day) / "truth.parquet")
        examined = np.r_[np.argsort(-(sig + rng.random(PER_DAY) * 0.3))[:60], rng.choice(PER_DAY, 40, replace=False)]
        reason = ["targeted"] * 60 + ["random"] * 40
        lab = pl.DataFrame(
            {
                S.SHIPMENT_ID: [ids[k] for k in examined],
                S.EXAM_DATE: [day + timedelta(days=1)] * len(examined),
                S.OUTCOME: ["precursor" if positive[k] else "no_finding" for k in examined],
                S.EXAM_REASON: reason,
            }
        ).unique(S.SHIPMENT_ID, keep="first", maintain_order=True)
        labels.append(lab)
    labels_df = pl.concat(labels).with_columns(
        pl.col(S.OUTCOME).cast(S.Outcome), pl.col(S.EXAM_REASON).cast(S.ExamReason)
    )
    return layout, labels_df


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def small_estimator():
    from riskpipe.estimator import TabularRiskClassifier

    return TabularRiskClassifier(random_state=0, max_iter=60, min_samples_leaf=10, early_stopping=False)


def settings_for(layout: Layout) -> Settings:
    return Settings(home=layout.home, port_capacity={"4701": 10, "2720": 10}, exploration_share=0.1)


def test_training_set_is_point_in_time_and_labelled_only(world):
    layout, labels = world
    days = [START + timedelta(days=i) for i in range(3)]
    data = build_training_set(layout, labels, days, builder=fake_builder)
    per_day = data.group_by(S.ARRIVAL_DATE).len().sort(S.ARRIVAL_DATE)["len"].to_list()
    expected = [labels.filter(pl.col(S.SHIPMENT_ID).str.starts_with(f"D{i:02d}")).height for i in range(3)]
    assert per_day == expected
    assert {S.IS_POSITIVE, S.EXAM_REASON, S.ARRIVAL_DATE, "f_signal"} <= set(data.columns)
    # day 0 sees no labels (all exams are the next day); day 2 sees only day 0's outcomes
    prior = data.group_by(S.ARRIVAL_DATE).agg(pl.col("f_prior_positives").first()).sort(S.ARRIVAL_DATE)
    day0_pos = (
        labels.filter(pl.col(S.SHIPMENT_ID).str.starts_with("D00")).select(S.is_positive_expr()).to_series().sum()
    )
    # day 0's outcomes are recorded on day 1 (not before it): day 1 sees none, day 2 sees them
    assert day0_pos > 0
    assert prior["f_prior_positives"].to_list() == [0, 0, day0_pos]


def test_feature_cache_is_invalidated_by_new_labels(world, tmp_path):
    layout, labels = world
    day = START + timedelta(days=3)
    calls = []

    def counting(layout_, day_, labels_):
        calls.append(day_)
        return fake_builder(layout_, day_, labels_)

    first = day_features(layout, day, labels, builder=counting)
    again = day_features(layout, day, labels, builder=counting)
    assert first.equals(again) and len(calls) == 1
    later_only = pl.concat(
        [labels, labels.head(1).with_columns(pl.lit("X-new").alias(S.SHIPMENT_ID), pl.lit(day).alias(S.EXAM_DATE))]
    )
    day_features(layout, day, later_only, builder=counting)  # exam on day itself: not known before
    assert len(calls) == 1
    earlier = pl.concat(
        [labels, labels.head(1).with_columns(pl.lit("X-old").alias(S.SHIPMENT_ID), pl.lit(START).alias(S.EXAM_DATE))]
    )
    day_features(layout, day, earlier, builder=counting)
    assert len(calls) == 2


def test_time_split_orders_days():
    days = [START + timedelta(days=i) for i in range(10)]
    train, calib, ev = time_split(list(reversed(days)))
    assert train == days[:6] and calib == days[6:8] and ev == days[8:]


def test_model_learns_planted_signal_and_beats_baselines(world):
    layout, labels = world
    days = [START + timedelta(days=i) for i in range(DAYS)]
    data = build_training_set(layout, labels, days, builder=fake_builder)
    train = data.filter(pl.col(S.ARRIVAL_DATE) < days[8])
    calib = data.filter(pl.col(S.ARRIVAL_DATE).is_between(days[8], days[9]))
    model, meta = fit_risk_model(train, calib, estimator=small_estimator())
    assert meta["feature_columns"] == ["f_signal", "f_noise", "f_cat", "f_prior_positives"]
    assert meta["importance"]["f_signal"] > meta["importance"]["f_noise"]
    test = data.filter(pl.col(S.ARRIVAL_DATE) >= days[10])
    p = model.predict_risk(test)
    assert ((p >= 0) & (p <= 1)).all()
    from riskpipe.metrics import pr_auc

    assert pr_auc(test[S.IS_POSITIVE].to_numpy(), p) > 0.8


def test_evaluate_scored_exact_values():
    d1, d2 = date(2026, 2, 1), date(2026, 2, 2)
    scored = pl.DataFrame(
        {
            S.ARRIVAL_DATE: [d1] * 4 + [d2] * 4,
            S.SHIPMENT_ID: list("abcdefgh"),
            S.IS_POSITIVE: [1, 0, None, None, 0, None, 1, 0],
            S.EXAM_REASON: ["targeted", "random", None, None, "random", None, "random", "targeted"],
            "true_positive": [1, 0, 1, 0, 0, 0, 1, 0],
            "score__m": [0.9, 0.8, 0.7, 0.1, 0.9, 0.5, 0.4, 0.1],
        },
        schema_overrides={S.IS_POSITIVE: pl.Int8, "true_positive": pl.Int8},
    )
    rep = evaluate_scored(scored, ["m"], {d1: 2, d2: 2}, fractions=(0.5,))
    truth = rep["views"]["truth"]["m"]
    # day1 top2 = a(1), b(0); day2 top2 = e(0), f(0): 1 hit of 4 picks, 1 of 3 positives
    assert truth["precision_at_capacity"] == 0.25
    assert truth["recall_at_capacity"] == pytest.approx(1 / 3)
    assert truth["lift_at_capacity"] == pytest.approx(0.25 / (3 / 8))
    lab = rep["views"]["labelled"]["m"]
    # examined among picks: a, b, e -> 1 hit of 3; labelled positives: a, g
    assert lab["precision_at_capacity"] == pytest.approx(1 / 3)
    assert lab["recall_at_capacity"] == 0.5
    rnd = rep["base_rates"]["random_exams"]
    assert (rnd["n"], rnd["positives"]) == (3, 1)
    assert rep["views"]["random_exams"]["m"]["recall_at_capacity"] == 0.0
    table = evaluation_table(rep)
    assert table.columns[0] == "model"
    assert [c for c in table.columns if c.endswith("_capacity")] == [
        "precision_at_capacity",
        "recall_at_capacity",
        "lift_at_capacity",
    ]
    assert table["precision_at_50pct"].to_list() == [0.25]


def test_retrain_promotes_first_then_decides_by_margin(world):
    layout, labels = world
    settings = settings_for(layout)
    first = retrain(
        layout,
        settings,
        until=START + timedelta(days=9),
        labels=labels,
        builder=fake_builder,
        use_rules=False,
        estimator=small_estimator(),
    )
    assert first.promoted and champion_version(settings.models_dir) == first.challenger_version
    table = first.table
    assert table["model"].to_list()[:4] == ["model", "rules", "random", "linear"]
    truth = first.report["views"]["truth"]
    assert truth["model"]["recall_at_capacity"] > truth["random"]["recall_at_capacity"]
    loaded = load_model(settings.models_dir)
    assert loaded.version == first.challenger_version and loaded.feature_columns[0] == "f_signal"
    # same data again: the challenger cannot beat the champion by the margin
    second = retrain(
        layout,
        settings,
        until=START + timedelta(days=9),
        labels=labels,
        builder=fake_builder,
        use_rules=False,
        estimator=small_estimator(),
        margin=0.5,
    )
    assert not second.promoted and champion_version(settings.models_dir) == first.challenger_version
    decisions = read_decisions(settings.models_dir)
    assert [d["promoted"] for d in decisions] == [True, False]
    assert decisions[1]["champion_version"] == first.challenger_version


@pytest.mark.parametrize("breakage", ["corrupt", "missing_model", "tampered"])
def test_retrain_refuses_to_promote_past_a_champion_it_cannot_use(world, tmp_path, breakage):
    """champion.json exists but cannot be used: no silent promotion without comparison; --force
    promotes and says why. (A fresh registry, no champion.json, promotes its first model: above.)"""
    import json

    from riskpipe.errors import RiskpipeError
    from riskpipe.registry import CHAMPION_FILE, MODEL_FILE, save_model, set_champion

    layout, labels = world
    settings = settings_for(layout).model_copy(update={"registry_dir": tmp_path / "models"})
    models = settings.models_dir
    # a champion to break (any signed model will do: it is never compared when broken)
    from riskpipe.model import fit_risk_model as fit

    data = build_training_set(layout, labels, [START + timedelta(days=i) for i in range(6)], builder=fake_builder)
    model, meta = fit(data, None, estimator=small_estimator())
    set_champion(models, save_model(models, model, meta, version="m1"))
    if breakage == "corrupt":
        (models / CHAMPION_FILE).write_text('{"version": ')
    elif breakage == "missing_model":
        (models / CHAMPION_FILE).write_text(json.dumps({"version": "m0"}))
    else:
        with open(models / "m1" / MODEL_FILE, "ab") as fh:
            fh.write(b"\0")
    kwargs = dict(
        until=START + timedelta(days=9),
        labels=labels,
        builder=fake_builder,
        use_rules=False,
        estimator=small_estimator(),
    )
    with pytest.raises(RiskpipeError, match=r"champion is not usable.*refusing to promote.*--force"):
        retrain(layout, settings, **kwargs)
    assert read_decisions(models) == [] and [p.name for p in models.iterdir() if p.is_dir()] == ["m1"]
    forced = retrain(layout, settings, force=True, **kwargs)
    assert forced.promoted and champion_version(models) == forced.challenger_version
    assert forced.reason.startswith("no usable champion: challenger promoted without comparison (forced:")


def test_unexamined_presumed_negatives_are_optional(world):
    layout, labels = world
    day = START + timedelta(days=2)
    plain = build_training_set(layout, labels, [day], builder=fake_builder)
    more = build_training_set(layout, labels, [day], builder=fake_builder, unexamined_share=0.5)
    extra = more.filter(pl.col(S.EXAM_REASON).is_null())
    assert plain[S.EXAM_REASON].null_count() == 0
    assert extra.height == round((PER_DAY - plain.height) * 0.5)
    assert extra[S.IS_POSITIVE].sum() == 0 and extra[S.SHIPMENT_ID].is_in(plain[S.SHIPMENT_ID]).sum() == 0


def test_blend_formula():
    from riskpipe.score import blend

    # without floor marks, strong rule scores (>= 0.6) floor the probability at w * r; weaker ones not at all
    np.testing.assert_allclose(
        blend([0.2, 0.0, 0.9, 0.01, 0.0, 0.0], [0.6, 0.8, 0.0, 0.5, 0.5, 0.3], 0.5), [0.3, 0.4, 0.9, 0.01, 0.0, 0.0]
    )
    # with floor marks: only the floor rules' score sets the floor, however strong the others
    np.testing.assert_allclose(
        blend([0.0, 0.0, 0.2, 0.0], [0.8, 0.8, 0.6, 0.0], 0.05, floor_score=[0.6, 0.0, 0.6, 0.0]),
        [0.03, 0.0, 0.2, 0.0],
    )


def test_cascade_matches_the_whole_model_on_candidates(world):
    layout, labels = world
    days = [START + timedelta(days=i) for i in range(DAYS)]
    data = build_training_set(layout, labels, days, builder=fake_builder)
    model, _ = fit_risk_model(
        data.filter(pl.col(S.ARRIVAL_DATE) < days[8]),
        data.filter(pl.col(S.ARRIVAL_DATE) >= days[8]),
        estimator=small_estimator(),
    )
    X = pl.concat([fake_builder(layout, d, labels) for d in days[10:]])
    full = model.predict_risk(X)
    np.testing.assert_allclose(model.predict_risk_cascade(X, candidate_share=1.0), full)
    part = model.predict_risk_cascade(X, candidate_share=0.05)
    # the whole model's top 2 % are all among the re-scored candidates (exact values)
    top = np.argsort(-full, kind="stable")[: int(0.02 * X.height)]
    np.testing.assert_allclose(part[top], full[top])
    assert np.isclose(part, full).sum() >= int(0.05 * X.height)
    assert not np.allclose(part, full)  # the tail keeps the first stage's probability


def test_retrain_decides_on_evidence_and_audits_a_forced_promotion(world, tmp_path):
    """A champion that sees only noise: the challenger's doubly robust hits at capacity are far
    higher, yet with fewer labelled positives than the minimum the champion is kept; --force
    promotes and decisions.jsonl says so, by whom, with the evidence; with enough positives the
    interval's lower bound decides."""
    from riskpipe.registry import operator_name, save_model, set_champion

    layout, labels = world
    settings = settings_for(layout).model_copy(update={"registry_dir": tmp_path / "models"})
    models = settings.models_dir
    data = build_training_set(layout, labels, [START + timedelta(days=i) for i in range(6)], builder=fake_builder)
    weak, meta = fit_risk_model(data, None, feature_columns=["f_noise"], estimator=small_estimator())
    set_champion(models, save_model(models, weak, meta, version="weak"))
    kwargs = dict(
        until=START + timedelta(days=9),
        labels=labels,
        builder=fake_builder,
        use_rules=False,
        estimator=small_estimator(),
    )

    kept = retrain(layout, settings, min_positives=1000, **kwargs)
    ev = kept.evidence
    assert ev["difference"] > 0 and ev["labelled_positives"] < 1000
    assert not kept.promoted and champion_version(models) == "weak"
    assert (
        kept.reason
        == f"not enough evidence: champion kept ({ev['labelled_positives']} labelled positives < minimum 1000)"
    )
    card = (models / kept.challenger_version / "model_card.md").read_text()
    assert "Promotion evidence" in card and f"{ev['random_exams']} random exams" in card

    forced = retrain(layout, settings, min_positives=1000, force=True, **kwargs)
    assert forced.promoted and champion_version(models) == forced.challenger_version
    record = read_decisions(models)[-1]
    assert record["action"] == "forced-promote" and record["forced"] is True and record["by"] == operator_name()
    assert record["from_version"] == "weak" and record["to_version"] == forced.challenger_version
    assert (
        "not enough evidence" in record["reason"]
        and record["evidence"]["labelled_positives"] == ev["labelled_positives"]
    )
    assert record["min_positives"] == 1000

    set_champion(models, "weak")
    decided = retrain(layout, settings, min_positives=1, **kwargs)
    lo = decided.evidence["interval"][0]
    assert decided.promoted == (lo > 0) and decided.promoted, decided.reason
    assert read_decisions(models)[-1]["action"] == "retrain"
