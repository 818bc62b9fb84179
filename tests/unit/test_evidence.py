"""Intervals and "beats" verdicts of a view's figures (issue 13: the demo says the model beats the
rules alone and random selection on the random-exam view only when the evidence supports it)."""

from __future__ import annotations

import math

import pytest

from riskpipe.evaluation.evidence import beats_sentence, fisher_greater, view_evidence, wilson


def _scorer(hits: int, selected: int, hits3: int, selected3: int, cap_hits: int, cap_sel: int) -> dict:
    return {
        "hits_at_prevalence": {"1x": hits, "3x": hits3},
        "selected_at_prevalence": {"1x": selected, "3x": selected3},
        "hits_at_capacity": cap_hits,
        "selected_at_capacity": cap_sel,
    }


def _view(model: tuple, rules: tuple, random: tuple, positives: int = 24, enough: bool = True) -> dict:
    return {
        "view": "random_exams",
        "days": ["2026-01-22", "2026-01-31"],
        "rows": 8000,
        "positives": positives,
        "k_at_prevalence": {"1x": 240, "3x": 720},
        "enough_evidence": enough,
        "verdict": None if enough else f"not enough evidence ({positives} positives)",
        "scorers": {"model": _scorer(*model), "rules": _scorer(*rules), "random": _scorer(*random)},
    }


def test_wilson_interval_holds_the_estimate_and_stays_in_unit_range():
    lo, hi = wilson(8, 24)
    assert lo < 8 / 24 < hi
    # the score interval solves |p - phat| = z * sqrt(p (1 - p) / n) at both ends
    for end in (lo, hi):
        assert abs(end - 8 / 24) == pytest.approx(1.959964 * math.sqrt(end * (1 - end) / 24), rel=1e-6)
    assert wilson(0, 24)[0] == pytest.approx(0.0, abs=1e-12) and 0 < wilson(0, 24)[1] < 0.2
    assert wilson(24, 24)[1] == pytest.approx(1.0) and wilson(24, 24)[0] > 0.8
    assert wilson(0, 0) == (0.0, 1.0)


def test_fisher_one_sided_p_value_is_the_hypergeometric_tail():
    # 2 x 12 items, 3 successes: P(all 3 in the first half) = C(12,3) / C(24,3)
    assert fisher_greater(3, 0, 12) == pytest.approx(math.comb(12, 3) / math.comb(24, 3))
    assert fisher_greater(0, 5, 12) == pytest.approx(1.0)
    assert fisher_greater(5, 5, 12) > 0.5
    assert fisher_greater(12, 0, 12) < 1e-5


def test_beats_only_where_the_counts_support_it():
    # model 10 of 24 at 1x (rules 2): beats; at 3x 12 vs 7: not shown; ports' capacity 20 vs 19: not shown
    ev = view_evidence(_view((10, 30, 12, 80, 20, 800), (2, 30, 7, 80, 19, 800), (0, 24, 1, 70, 3, 800)))
    by_key = {c["key"]: c for c in ev["capacities"]}
    assert list(by_key) == ["1x", "3x", "capacity"]
    assert by_key["1x"]["versus"]["rules"]["beats"] is True
    assert by_key["3x"]["versus"]["rules"]["beats"] is False
    assert by_key["capacity"]["versus"]["rules"]["beats"] is False
    assert all(c["versus"]["random"]["beats"] for c in ev["capacities"])
    row = by_key["1x"]["scorers"]["model"]
    assert (row["hits"], row["selected"], row["recall"]) == (10, 30, pytest.approx(10 / 24))
    assert row["precision_ci"][0] < 10 / 30 < row["precision_ci"][1]
    text = beats_sentence(ev)
    assert "beats the rules alone at 1x (10 vs 2 of 24" in text
    assert "not shown at 3x (12 vs 7 of 24" in text
    assert "beats random selection at 1x" in text


def test_no_beats_without_evidence():
    close = view_evidence(_view((3, 30, 4, 80, 5, 800), (2, 30, 3, 80, 5, 800), (1, 24, 2, 70, 4, 800), positives=6))
    assert not any(v["beats"] for c in close["capacities"] for v in c["versus"].values())
    assert "beats" not in beats_sentence(close).replace("does not show it beats", "")
    thin = view_evidence(
        _view((1, 3, 1, 8, 1, 80), (0, 3, 0, 8, 1, 80), (0, 3, 0, 8, 0, 80), positives=1, enough=False)
    )
    assert thin["capacities"] == []
    assert beats_sentence(thin) == "random exams: not enough evidence (1 positive): no verdict"


def test_the_demo_prints_intervals_and_says_beats_only_with_evidence(capsys):
    from riskpipe.cli.world import _print_evidence

    rnd = _view((10, 30, 12, 80, 20, 800), (2, 30, 7, 80, 19, 800), (0, 24, 1, 70, 3, 800))
    labelled = {**_view((3, 4, 4, 6, 5, 60), (2, 4, 3, 6, 5, 60), (0, 2, 0, 4, 1, 60), positives=6), "view": "labelled"}
    _print_evidence({"views": [labelled, rnd]}, 0.1)
    out = " ".join(capsys.readouterr().out.split())
    assert "random exams (10% of parcels" in out
    assert "out of time by construction (the model trained on arrival days up to 2026-01-21 only" in out
    assert "0.417 (10/24) [0.245, 0.612]" in out  # the model's recall at 1x with its Wilson interval
    assert "random exams: the model beats the rules alone at 1x" in out
    assert "labelled: the model does not show it beats the rules alone" in out
