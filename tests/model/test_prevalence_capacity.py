"""Precision and recall at capacities of 1x and 3x the prevalence, per evaluation view.

The frame is small enough to compute every figure by hand (comments give the arithmetic).
Scores fall with the letter within a day, so the top k of a day are its first k letters.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from riskpipe import metrics as M
from riskpipe import schema as S
from riskpipe.model.evaluate import MIN_EVIDENCE_POSITIVES, evaluate_scored, evaluation_table, view_summaries
from riskpipe.synth import exams

D1, D2, D3 = date(2026, 2, 1), date(2026, 2, 2), date(2026, 2, 3)


def _day(day: date, letters: str, truth: str, exams_: dict[str, tuple[int, str]]) -> pl.DataFrame:
    ids = [f"{day.day}{c}" for c in letters]
    return pl.DataFrame(
        {
            S.ARRIVAL_DATE: [day] * len(letters),
            S.SHIPMENT_ID: ids,
            S.IS_POSITIVE: [exams_.get(c, (None, None))[0] for c in letters],
            S.EXAM_REASON: [exams_.get(c, (None, None))[1] for c in letters],
            "true_positive": [int(c in truth) for c in letters],
            "score__m": [1.0 - i / 100 for i in range(len(letters))],
        },
        schema_overrides={S.IS_POSITIVE: pl.Int8, "true_positive": pl.Int8},
    )


def frame() -> pl.DataFrame:
    """Two days of 10 shipments. Truth: a, d (day 1); m, s (day 2). Examined: a+ (targeted),
    c- e- (random), h- (targeted); m+ (random), n- (targeted), s+ (targeted), t- (random)."""
    day1 = _day(
        D1, "abcdefghij", "ad", {"a": (1, "targeted"), "c": (0, "random"), "e": (0, "random"), "h": (0, "targeted")}
    )
    day2 = _day(
        D2, "klmnopqrst", "ms", {"m": (1, "random"), "n": (0, "targeted"), "s": (1, "targeted"), "t": (0, "random")}
    )
    return pl.concat([day1, day2])


def test_precision_and_recall_at_1x_and_3x_prevalence_match_hand_computed_values():
    rep = evaluate_scored(frame(), ["m"], {D1: 2, D2: 2}, fractions=(0.5,))

    truth = rep["base_rates"]["truth"]
    # 4 true positives in 20 shipments: 1x = ceil(0.2 * 10) = 2 a day, 3x = ceil(0.6 * 10) = 6 a day
    assert truth["prevalence"] == pytest.approx(0.2)
    assert truth["k_at_prevalence"] == {"1x": 4, "3x": 12}
    m = rep["views"]["truth"]["m"]
    # 1x: {a, b} and {k, l}: 1 hit (a) of 4 picks, 1 of 4 positives
    assert m["precision_at_prevalence"]["1x"] == pytest.approx(0.25)
    assert m["recall_at_prevalence"]["1x"] == pytest.approx(0.25)
    # 3x: a..f and k..p: a, d, m = 3 hits of 12 picks, 3 of 4 positives
    assert m["precision_at_prevalence"]["3x"] == pytest.approx(0.25)
    assert m["recall_at_prevalence"]["3x"] == pytest.approx(0.75)
    assert (m["hits_at_prevalence"]["3x"], m["selected_at_prevalence"]["3x"]) == (3, 12)

    lab = rep["base_rates"]["labelled"]
    # known positives a, m, s over all 20 shipments: 0.15; 1x = ceil(1.5) = 2, 3x = ceil(4.5) = 5 a day
    assert lab["prevalence"] == pytest.approx(0.15)
    assert lab["k_at_prevalence"] == {"1x": 4, "3x": 10}
    m = rep["views"]["labelled"]["m"]
    # 1x: examined among {a, b}, {k, l}: a -> 1 of 1; recall 1 of 3
    assert m["precision_at_prevalence"]["1x"] == pytest.approx(1.0)
    assert m["recall_at_prevalence"]["1x"] == pytest.approx(1 / 3)
    # 3x: examined among a..e, k..o: a, c, e, m, n -> 2 hits of 5; recall 2 of 3
    assert m["precision_at_prevalence"]["3x"] == pytest.approx(0.4)
    assert m["recall_at_prevalence"]["3x"] == pytest.approx(2 / 3)

    rnd = rep["base_rates"]["random_exams"]
    # random exams c, e, m, t with 1 positive: 0.25 per exam; 1x = ceil(2.5) = 3, 3x = ceil(7.5) = 8 a day
    assert rnd["prevalence"] == pytest.approx(0.25)
    assert rnd["k_at_prevalence"] == {"1x": 6, "3x": 16}
    m = rep["views"]["random_exams"]["m"]
    # 1x: random among a..c, k..m: c, m -> 1 hit of 2; the one positive found
    assert m["precision_at_prevalence"]["1x"] == pytest.approx(0.5)
    assert m["recall_at_prevalence"]["1x"] == pytest.approx(1.0)
    # 3x: random among a..h, k..r: c, e, m -> 1 hit of 3
    assert m["precision_at_prevalence"]["3x"] == pytest.approx(1 / 3)
    assert m["recall_at_prevalence"]["3x"] == pytest.approx(1.0)

    # the earlier metrics stay available
    assert rep["views"]["truth"]["m"]["precision_at_capacity"] == pytest.approx(0.25)
    table = evaluation_table(rep)
    assert table.columns[:5] == [
        "model",
        "precision_at_1x_prevalence",
        "recall_at_1x_prevalence",
        "precision_at_3x_prevalence",
        "recall_at_3x_prevalence",
    ]
    assert "precision_at_capacity" in table.columns and "recall_at_50pct" in table.columns
    assert table["recall_at_3x_prevalence"].to_list() == [pytest.approx(0.75)]


def test_a_view_can_cover_more_days_than_the_others():
    """Random exams are few: their view may cover every day after the training window while the
    labelled and truth views keep the evaluation days."""
    day3 = _day(D3, "uvwxyz", "u", {"u": (1, "random"), "v": (0, "random")})
    scored = pl.concat([day3, frame()])
    rep = evaluate_scored(
        scored,
        ["m"],
        {D1: 2, D2: 2, D3: 2},
        fractions=(0.5,),
        view_days={"labelled": [D1, D2], "truth": [D1, D2], "random_exams": [D1, D2, D3]},
    )
    assert rep["eval_days"] == [D1.isoformat(), D2.isoformat()]
    assert rep["base_rates"]["labelled"]["positives"] == 3  # u (day 3) is not in the labelled view
    assert rep["base_rates"]["truth"]["prevalence"] == pytest.approx(0.2)
    rnd = rep["base_rates"]["random_exams"]
    assert (rnd["n"], rnd["positives"]) == (6, 2)
    assert rnd["days"] == [D1.isoformat(), D2.isoformat(), D3.isoformat()]
    # 2 of 6 random exams: 1x = ceil(10/3) = 4 (days 1, 2) and ceil(6/3) = 2 (day 3)
    assert rnd["k_at_prevalence"]["1x"] == 10
    # day 3 top 2 = u, v: u found; days 1-2 top 4 hold c and m: m found -> 2 of 2, 2 hits of 4 picks
    m = rep["views"]["random_exams"]["m"]
    assert m["recall_at_prevalence"]["1x"] == pytest.approx(1.0)
    assert m["precision_at_prevalence"]["1x"] == pytest.approx(0.5)


def test_view_summaries_give_counts_and_refuse_to_judge_on_few_positives():
    scored = frame().with_columns(pl.col("score__m").reverse().alias("score__other"))
    rep = evaluate_scored(scored, ["m", "other"], {D1: 2, D2: 2}, fractions=(0.5,))
    summaries = {s["view"]: s for s in view_summaries(rep, min_positives=2)}
    assert list(summaries) == ["labelled", "random_exams", "truth"]
    rnd = summaries["random_exams"]
    assert (rnd["rows"], rnd["positives"], rnd["enough_evidence"]) == (4, 1, False)
    assert rnd["verdict"] == "not enough evidence (1 positive)"
    truth = summaries["truth"]
    assert truth["enough_evidence"] and truth["verdict"] is None
    assert truth["scorers"]["m"]["recall_at_prevalence"]["3x"] == pytest.approx(0.75)
    assert truth["scorers"]["m"]["hits_at_prevalence"]["3x"] == 3
    assert truth["k_at_prevalence"] == {"1x": 4, "3x": 12}
    assert "true positives" in truth["prevalence_basis"]
    assert MIN_EVIDENCE_POSITIVES >= 5


def test_k_for_prevalence():
    assert M.k_for_prevalence(8000, 0.003, 1) == 24
    assert M.k_for_prevalence(8000, 0.003, 3) == 72
    assert M.k_for_prevalence(10, 0.25, 1) == 3  # ceil(2.5)
    assert M.k_for_prevalence(10, 0.5, 3) == 10  # at most n
    assert M.k_for_prevalence(10, 0.0, 3) == 0  # no positives: no capacity to judge
    assert M.k_for_prevalence(0, 0.1, 1) == 0


def test_random_compliance_exams_are_drawn_independently_of_targeting():
    """Drawn after targeting, random exams skipped the parcels the rules picked, so their hit rate
    underestimated the prevalence; drawn first they are a uniform sample and targeting keeps its
    full share."""
    n = 20_000
    score = np.arange(n, dtype=float)  # distinct: the top 10 % by score are the targeted ones
    reason = exams.select_exams(
        score, np.ones(n, dtype=bool), np.random.default_rng(0), random_share=0.2, targeted_share=0.1
    )
    top = score >= n * 0.9
    assert (reason == 1).sum() == n // 10
    # about a fifth of the highest-scored parcels are compliance exams, like everywhere else
    assert 0.15 < (reason[top] == 2).mean() < 0.25
    assert 0.15 < (reason == 2).mean() < 0.25


def test_model_card_lines_carry_counts_and_the_evidence_verdict():
    from riskpipe.model.card import headline_metrics

    scored = frame().rename({"score__m": "score__model"})
    lines = headline_metrics(evaluate_scored(scored, ["model"], {D1: 2, D2: 2}), min_positives=2)
    assert lines["truth view"].startswith("20 rows, 4 positives, 2 days")
    assert (
        lines["truth precision / recall at 3x prevalence (12 exams)"]
        == "0.2500 / 0.7500 (3 found; 12 selected rows in the view; 4 positives)"
    )
    # 1 random-exam positive (fewer than 2): no figure at all, not even at the ports' capacity
    assert lines["random_exams precision / recall at 1x prevalence (6 exams)"] == "not enough evidence (1 positive)"
    assert (
        lines["random_exams precision / recall at capacity (the ports' exam slots)"]
        == "not enough evidence (1 positive)"
    )
    # by default a view needs MIN_EVIDENCE_POSITIVES (5): 4 true positives are not enough
    assert (
        headline_metrics(evaluate_scored(scored, ["model"], {D1: 2, D2: 2}))[
            "truth precision / recall at 1x prevalence (4 exams)"
        ]
        == "not enough evidence (4 positives)"
    )
