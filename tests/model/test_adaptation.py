"""The closed-loop adaptation study on a small synthetic world (slow: generates and ingests)."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from riskpipe.config import Settings
from riskpipe.store import Layout


@pytest.mark.slow
def test_adaptation_study_runs_each_policy_and_share(tmp_path):
    from riskpipe.evaluation.adaptation import adaptation_study, adaptation_summary
    from riskpipe.ingest import import_labels, ingest_paths
    from riskpipe.labels import LabelStore
    from riskpipe.synth.world import generate

    layout = Layout(tmp_path)
    generate(layout, date(2026, 1, 5), 12, 1500, 3)
    ingest_paths(layout)
    store = LabelStore(f"sqlite:///{tmp_path / 'riskpipe.db'}")
    import_labels(layout, layout.landing / "outcomes", store)
    settings = Settings(home=tmp_path)
    study = adaptation_study(layout, settings, store.current(), warmup_days=8, retrain_every=2)
    sim_days = 12 - 8
    assert study.height == 2 * 2 * sim_days
    assert set(study["policy"]) == {"static", "weekly"}
    assert ((study["recall_at_capacity"] >= 0) & (study["recall_at_capacity"] <= 1)).all()
    weekly = study.filter(pl.col("policy") == "weekly")["model_version"].unique().len()
    static = study.filter(pl.col("policy") == "static")["model_version"].unique().len()
    assert static == 1 and weekly > 1
    summary = adaptation_summary(study)
    assert summary["found"].sum() == study["found"].sum()


@pytest.mark.slow
def test_adaptation_arms_with_novelty_and_weighting(tmp_path):
    from riskpipe.evaluation.adaptation import Arm, adaptation_study, scheme_discovery
    from riskpipe.ingest import import_labels, ingest_paths
    from riskpipe.labels import LabelStore
    from riskpipe.synth.world import generate

    layout = Layout(tmp_path)
    generate(layout, date(2026, 1, 5), 12, 1500, 3)
    ingest_paths(layout)
    store = LabelStore(f"sqlite:///{tmp_path / 'riskpipe.db'}")
    import_labels(layout, layout.landing / "outcomes", store)
    settings = Settings(home=tmp_path)
    arms = [Arm("weekly", 0.2, 0.5), Arm("weekly", 0.2, 0.5, weighted=True)]
    study = adaptation_study(layout, settings, store.current(), warmup_days=8, retrain_every=2, capacity=10, arms=arms)
    assert study.height == 2 * 4 and set(study["arm"]) == {a.name for a in arms}
    assert (study["explored"] == 2).all()  # round(10 x 0.2) exploration exams a day
    assert (study["new_scheme_found"] <= study["new_scheme_positives"]).all()
    assert scheme_discovery(study).height == 2


@pytest.mark.slow
def test_learnability_ceiling_counts_the_top_rows_of_a_truth_trained_model(tmp_path):
    from riskpipe.evaluation.adaptation import learnability_ceiling
    from riskpipe.evaluation.truth import read_truth
    from riskpipe.ingest import import_labels, ingest_paths
    from riskpipe.labels import LabelStore
    from riskpipe.synth.world import generate

    layout = Layout(tmp_path)
    generate(layout, date(2026, 1, 5), 12, 1500, 3)
    ingest_paths(layout)
    store = LabelStore(f"sqlite:///{tmp_path / 'riskpipe.db'}")
    import_labels(layout, layout.landing / "outcomes", store)
    out = learnability_ceiling(layout, Settings(home=tmp_path), store.current(), [5, 50, 1500], last_days=3)
    truth = read_truth(layout, layout.raw_days()[-3:])
    assert out["positives"].to_list() == [int(truth["true_positive"].sum())] * 3
    found = out["found"].to_list()
    assert found[0] <= found[1] <= found[2] == out["positives"][0]  # a whole day's top holds every positive
    assert found[0] <= 5 * 3
    assert found[1] / found[2] > 3 * 50 / 1500  # the truth-trained ranking beats random picks threefold


@pytest.mark.slow
def test_a_daily_arm_retrains_every_simulated_day(tmp_path):
    """The cadence comparison (issue 14): a daily arm retrains before every simulated day but the
    first, on its own labels; a weekly one only every ``retrain_every`` days."""
    from riskpipe.evaluation.adaptation import Arm, adaptation_study
    from riskpipe.ingest import import_labels, ingest_paths
    from riskpipe.labels import LabelStore
    from riskpipe.synth.world import generate

    layout = Layout(tmp_path)
    generate(layout, date(2026, 1, 5), 12, 1500, 3)
    ingest_paths(layout)
    store = LabelStore(f"sqlite:///{tmp_path / 'riskpipe.db'}")
    import_labels(layout, layout.landing / "outcomes", store)
    arms = [Arm("daily", 0.0), Arm("weekly", 0.0)]
    study = adaptation_study(
        layout, Settings(home=tmp_path), store.current(), warmup_days=8, retrain_every=7, capacity=10, arms=arms
    )
    daily = study.filter(pl.col("policy") == "daily").sort("day")
    weekly = study.filter(pl.col("policy") == "weekly")
    assert daily["model_version"].n_unique() == 4 and weekly["model_version"].n_unique() == 1
    # each day's model was trained on the days before it only
    assert daily["model_version"].to_list()[1:] == [f"sim-{d - timedelta(1)}" for d in daily["day"].to_list()[1:]]
