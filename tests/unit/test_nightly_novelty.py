"""Issue 14, point 3 in production: the nightly computes the novelty column, so novelty-aware
exploration (``exploration_novelty_share``) draws with unequal, recorded chances on the
published list (it was uniform: only ``riskpipe adaptation`` computed the column)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from manifest_rows import manifest_row
from threadpoolctl import threadpool_limits

from riskpipe import publish
from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.estimator import TabularRiskClassifier
from riskpipe.ingest import ingest_paths
from riskpipe.model.fit import fit_risk_model
from riskpipe.model.novelty import NOVELTY, day_novelty, novelty_scores
from riskpipe.nightly import features_path, rank_and_stage_step, with_novelty
from riskpipe.registry import load_model, save_model
from riskpipe.store import Layout

DAY = date(2026, 1, 5)
N = 60
NEW = set(range(40, N))  # never-examined shippers first seen today: the novel ones


def _row(i: int) -> dict[str, str]:
    return {**manifest_row(f"S{i:03d}", day=DAY.isoformat()), S.PORT_OF_ENTRY: "4701", S.SHIPPER_NAME: f"Shipper {i}"}


def _features(n: int, seed: int, ids: list[str] | None = None) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    new = np.array([i in NEW for i in range(n)]) if ids is not None else rng.random(n) < 0.3
    return pl.DataFrame(
        {
            S.SHIPMENT_ID: ids or [f"t{seed}-{i}" for i in range(n)],
            "f_x": rng.random(n),
            "hist_shipper_prior_exams": np.where(new, 0, rng.integers(1, 5, n)),
            "hist_seller_prior_exams": np.where(new, 0, rng.integers(1, 5, n)),
            "hist_shipper_first_seen_days": np.where(new, 0, rng.integers(30, 90, n)),
        }
    )


@pytest.fixture
def night(tmp_path: Path):
    home = tmp_path / "home"
    layout = Layout(home)
    layout.landing.mkdir(parents=True)
    pl.DataFrame([_row(i) for i in range(N)]).write_csv(layout.landing / "m.csv")
    assert ingest_paths(layout).rows_ingested == N
    ids = [f"S{i:03d}" for i in range(N)]
    feats = _features(N, 0, ids)
    features_path(layout, DAY).parent.mkdir(parents=True, exist_ok=True)
    feats.write_parquet(features_path(layout, DAY))
    train = _features(400, 1).with_columns(
        (pl.col("f_x") > 0.9).cast(pl.Int8).alias(S.IS_POSITIVE), pl.lit(DAY).alias(S.ARRIVAL_DATE)
    )
    est = TabularRiskClassifier(random_state=0, max_iter=10, min_samples_leaf=5, early_stopping=False)
    with threadpool_limits(1):
        model, meta = fit_risk_model(train.head(300), train.tail(100), estimator=est, linear_weight=0.5)
    settings = load_settings(
        home,
        {"exploration_share": 0.5, "exploration_novelty_share": 0.9, "port_capacity": {"4701": 20}},
    )
    save_model(settings.models_dir, model, meta, version="v1", key_path=settings.registry_key_path)
    scored = pl.DataFrame(
        {
            S.SHIPMENT_ID: ids,
            S.RISK_SCORE: [0.9 - 0.01 * i if i < 5 else 0.001 for i in range(N)],
            S.RULE_SCORE: [0.0] * N,
            S.REASONS: [[] for _ in range(N)],
            S.MODEL_VERSION: ["v1"] * N,
        },
        schema={c: S.SCORES_SCHEMA[c] for c in S.SCORES_SCHEMA},
    )
    scored_file = tmp_path / "scored.parquet"
    scored.write_parquet(scored_file)
    return layout, settings, scored_file, feats


def _publish(layout: Layout, settings, scored_file: Path) -> pl.DataFrame:
    staged = publish.stage(layout, DAY)
    rank_and_stage_step(layout, settings, DAY, scored_file, staged, None, {})
    final = publish.commit(layout, staged)
    assert NOVELTY not in pl.read_parquet_schema(final["scores"] / "scores.parquet")  # not a published column
    return pl.read_parquet(final["targets"] / "targets.parquet")


def test_the_nightly_draws_exploration_by_novelty_with_recorded_chances(night) -> None:
    layout, settings, scored_file, _ = night
    targets = _publish(layout, settings, scored_file)
    explo = targets.filter(pl.col(S.SELECTION) == "exploration")
    assert explo.height == 10  # round(20 * 0.5) slots
    # the chances each row had: 10 slots among the 50 rows not picked by risk
    scored = with_novelty(
        layout,
        DAY,
        pl.read_parquet(scored_file),
        load_model(settings.models_dir, "v1", key_path=settings.registry_key_path),
    )
    rest = scored.filter(
        pl.col(S.SHIPMENT_ID).is_in(targets.filter(pl.col(S.SELECTION) == "risk")[S.SHIPMENT_ID].implode()).not_()
    )
    w = rest[NOVELTY].to_numpy()
    expected = dict(
        zip(rest[S.SHIPMENT_ID], np.minimum(10 * (0.1 / rest.height + 0.9 * w / w.sum()), 1.0), strict=True)
    )
    probs = dict(explo.select(S.SHIPMENT_ID, S.SELECTION_PROBABILITY).iter_rows())
    if max(expected.values()) < 1.0:  # no capping: the recorded chance is the formula's exactly
        for sid, p in probs.items():
            assert abs(p - expected[sid]) < 1e-9, sid
    new_ids = {f"S{i:03d}" for i in NEW}
    novel = [p for sid, p in expected.items() if sid in new_ids]
    known = [p for sid, p in expected.items() if sid not in new_ids]
    assert min(novel) > max(known)  # new, never-examined shippers get the larger chances
    assert len(set(np.round(list(probs.values()), 12))) > 1  # not uniform


def test_without_the_setting_or_a_model_exploration_stays_uniform(night) -> None:
    layout, settings, scored_file, _ = night
    off = settings.model_copy(update={"exploration_novelty_share": 0.0})
    explo = _publish(layout, off, scored_file).filter(pl.col(S.SELECTION) == "exploration")
    assert explo.height == 10 and np.allclose(explo[S.SELECTION_PROBABILITY].to_numpy(), 10 / 50)
    scored = pl.read_parquet(scored_file)
    assert with_novelty(layout, DAY, scored, None).columns == scored.columns  # rules-only night


def test_a_day_read_in_batches_gets_the_novelty_of_the_whole_day(night) -> None:
    layout, settings, scored_file, feats = night
    model = load_model(settings.models_dir, "v1", key_path=settings.registry_key_path)
    whole = novelty_scores(model.model, feats).to_numpy()
    parts = [feats.slice(a, 7) for a in range(0, feats.height, 7)]
    batched = day_novelty(model.model, parts)
    assert batched[S.SHIPMENT_ID].to_list() == feats[S.SHIPMENT_ID].to_list()
    assert np.allclose(batched[NOVELTY].to_numpy(), whole)
    via_step = with_novelty(layout, DAY, pl.read_parquet(scored_file), model, batch_rows=7)
    assert np.allclose(via_step.sort(S.SHIPMENT_ID)[NOVELTY].to_numpy(), whole)
