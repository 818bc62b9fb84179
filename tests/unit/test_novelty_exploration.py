"""Novelty-aware exploration: unequal chances, recorded exactly, exactly the slots drawn."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from riskpipe import schema as S
from riskpipe.config import Settings
from riskpipe.model.novelty import NOVELTY, unseen_parties
from riskpipe.rank import _novelty_draw, inclusion_probabilities, rank_day, systematic_sample

DAY = date(2026, 1, 10)


def _day(n: int, novelty: list[float] | None) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = [f"s{i:03d}" for i in range(n)]
    scores = pl.DataFrame(
        {
            S.SHIPMENT_ID: ids,
            S.RISK_SCORE: [0.9 if i < 3 else 0.0 for i in range(n)],
            S.RULE_SCORE: [0.0] * n,
            S.REASONS: [[] for _ in range(n)],
            S.MODEL_VERSION: ["v1"] * n,
        },
        schema_overrides={S.REASONS: pl.List(pl.String)},
    )
    if novelty is not None:
        scores = scores.with_columns(pl.Series(NOVELTY, novelty, dtype=pl.Float64))
    raw = pl.DataFrame(
        {S.SHIPMENT_ID: ids, S.PORT_OF_ENTRY: ["4701"] * n, S.ARRIVAL_DATE: [DAY] * n, S.SHIPPER_NAME: ["s"] * n}
    )
    return scores, raw


def _settings(**kw) -> Settings:
    base = dict(port_capacity={"4701": 6}, other_port_capacity=1, exploration_share=0.5)
    base.update(kw)
    return Settings(**base)


def test_inclusion_probabilities_sum_to_n_capped_at_one():
    size = np.array([10.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    pi = inclusion_probabilities(size, 3)
    assert abs(pi.sum() - 3) < 1e-9
    assert pi[0] == 1.0 and pi[-1] == 0.0
    assert np.allclose(pi[1:5], 0.5)  # the rest of n spread in proportion


def test_systematic_sample_draws_n_with_the_given_chances():
    pi = np.array([1.0, 0.5, 0.25, 0.25, 0.75, 0.25])
    counts = np.zeros(len(pi))
    us = (np.arange(2000) + 0.5) / 2000
    for u in us:
        picked = systematic_sample(pi, float(u))
        assert picked.sum() == 3
        counts += picked
    assert np.allclose(counts / len(us), pi, atol=1e-3)


def test_novelty_slots_follow_the_novelty_and_record_their_probability():
    n = 40
    novelty = [0.0] * n
    for i in range(30, 40):
        novelty[i] = 1.0
    scores, raw = _day(n, novelty)
    settings = _settings()
    hits = {}
    recorded: dict[str, float] = {}
    runs = 300
    for seed in range(runs):
        out = rank_day(scores, raw, settings, seed=seed, texts={}, novelty_share=0.8)
        explo = out.filter(pl.col(S.SELECTION) == "exploration")
        assert explo.height == 3  # round(6 * 0.5) slots, exactly
        for sid, p in explo.select(S.SHIPMENT_ID, S.SELECTION_PROBABILITY).iter_rows():
            hits[sid] = hits.get(sid, 0) + 1
            assert abs(recorded.setdefault(sid, p) - p) < 1e-12  # the chance does not depend on the draw
    # 37 shipments not picked by risk, 3 slots: pi = 3 * (0.2 / 37 + 0.8 * w / 10)
    novel, plain = 3 * (0.2 / 37 + 0.8 / 10), 3 * (0.2 / 37)
    assert abs(recorded["s035"] - novel) < 1e-9
    assert abs(recorded["s005"] - plain) < 1e-9
    assert abs(sum(hits.get(f"s{i:03d}", 0) for i in range(30, 40)) / runs - 10 * novel) < 0.15
    assert abs(sum(hits.get(f"s{i:03d}", 0) for i in range(3, 30)) / runs - 27 * plain) < 0.15


def test_without_a_novelty_column_exploration_stays_uniform():
    scores, raw = _day(40, None)
    out = rank_day(scores, raw, _settings(), texts={}, novelty_share=0.8)
    explo = out.filter(pl.col(S.SELECTION) == "exploration")
    assert explo.height == 3 and np.allclose(explo[S.SELECTION_PROBABILITY].to_numpy(), 3 / 37)


def test_unseen_parties_flags_new_never_examined_shippers():
    frame = pl.DataFrame(
        {
            "hist_shipper_prior_exams": [0, 2, None, 0],
            "hist_seller_prior_exams": [0, 0, None, 0],
            "hist_shipper_first_seen_days": [0, 1, None, 90],
        }
    )
    assert unseen_parties(frame).tolist() == [1.0, 0.0, 1.0, 0.0]


def test_a_novelty_share_of_one_keeps_every_chance_above_zero():
    """Share 1 would give novelty-0 shipments chance 0 (never explored, skipped by the
    estimates): the setting refuses it and the draw keeps a uniform part."""
    with pytest.raises(ValidationError):
        Settings(exploration_novelty_share=1.0)
    scores, raw = _day(40, [0.0] * 30 + [1.0] * 10)
    out = rank_day(scores, raw, _settings(), seed=0, texts={}, novelty_share=1.0)
    explo = out.filter(pl.col(S.SELECTION) == "exploration")
    assert explo.height == 3
    frame = pl.DataFrame(
        {
            S.PORT_OF_ENTRY: ["P"] * 20,
            "_random_key": np.linspace(0, 1, 20),
            "_is_risk": [False] * 20,
            "_explore_n": [2] * 20,
            NOVELTY: [0.0] * 15 + [1.0] * 5,
            S.SHIPMENT_ID: [f"s{i}" for i in range(20)],
        }
    )
    pi = _novelty_draw(frame, 1.0, DAY, 0)["_pi"].to_numpy()
    assert (pi > 0).all() and abs(pi.sum() - 2) < 1e-9
