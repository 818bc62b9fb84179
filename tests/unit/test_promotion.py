"""Evidence before promotion: IPS / doubly robust hits at capacity, the paired bootstrap, the
minimum of labelled positives, and the printed decision line."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from riskpipe import schema as S
from riskpipe.promotion import decide, dr_hits, estimate, ips_hits, paired_bootstrap, summary

D1, D2 = date(2026, 3, 1), date(2026, 3, 2)


def hand_frame() -> pl.DataFrame:
    """Day 1: 10 shipments, random exams on rows 0 and 1 (rate 0.2), row 0 positive; row 2 a
    targeted exam, positive. Day 2: 20 shipments, random exams on rows 0-3 (rate 0.2), rows 0 and
    1 positive. Policy A picks day-1 rows 0, 2 and day-2 row 0; policy B day-1 rows 1, 3 and
    day-2 rows 0, 1. q = 0.1 everywhere."""
    rows = []
    for day, n in ((D1, 10), (D2, 20)):
        for j in range(n):
            reason, positive = None, None
            if (day == D1 and j < 2) or (day == D2 and j < 4):
                reason, positive = "random", (day == D1 and j == 0) or (day == D2 and j < 2)
            if day == D1 and j == 2:
                reason, positive = "targeted", True
            rows.append(
                {
                    S.ARRIVAL_DATE: day,
                    S.SHIPMENT_ID: f"{day:%d}-{j:02d}",
                    S.IS_POSITIVE: positive,
                    S.EXAM_REASON: reason,
                    "q": 0.1,
                    "a": (day == D1 and j in (0, 2)) or (day == D2 and j == 0),
                    "b": (day == D1 and j in (1, 3)) or (day == D2 and j in (0, 1)),
                }
            )
    return pl.DataFrame(rows, schema_overrides={S.IS_POSITIVE: pl.Boolean, S.EXAM_REASON: pl.String})


def test_ips_estimate_equals_the_hand_computed_value():
    frame = hand_frame()
    # A: day 1 row 0 (1 / 0.2) + row 2 targeted (its known outcome, 1) + day 2 row 0 (1 / 0.2)
    assert ips_hits(frame, "a") == pytest.approx(11.0)
    # B: day 1 row 1 negative, row 3 unexamined; day 2 rows 0 and 1 (2 / 0.2)
    assert ips_hits(frame, "b") == pytest.approx(10.0)
    # a known rate instead of the day's share of random exams
    assert ips_hits(frame, "a", rate=0.1) == pytest.approx(21.0)
    # DR, A: day 1 row 0 (0.1 + 0.9 / 0.2) + row 2 targeted (1) + day 2 row 0 (0.1 + 0.9 / 0.2)
    assert dr_hits(frame, "a", "q") == pytest.approx(4.6 + 1.0 + 4.6)
    # DR, B: day 1 row 1 (0.1 - 0.1 / 0.2) + row 3 (0.1) + day 2 rows 0, 1 (2 x 4.6)
    assert dr_hits(frame, "b", "q") == pytest.approx(-0.4 + 0.1 + 9.2)


def better_frame(n_days: int = 5, per_day: int = 200, positives_per_day: int = 4) -> pl.DataFrame:
    """The challenger picks every targeted positive, the champion none."""
    rng = np.random.default_rng(1)
    parts = []
    for i in range(n_days):
        day = date(2026, 4, 1 + i)
        y = np.zeros(per_day, dtype=bool)
        y[:positives_per_day] = True
        reason = np.array([None] * per_day, dtype=object)
        reason[:20] = "targeted"
        reason[20 + rng.choice(per_day - 20, 4, replace=False)] = "random"
        parts.append(
            pl.DataFrame(
                {
                    S.ARRIVAL_DATE: [day] * per_day,
                    S.SHIPMENT_ID: [f"{i}-{j:03d}" for j in range(per_day)],
                    S.IS_POSITIVE: [bool(v) if r is not None else None for v, r in zip(y, reason, strict=False)],
                    S.EXAM_REASON: list(reason),
                    "q": [0.01] * per_day,
                    "ch": np.arange(per_day) < 10,
                    "champ": (np.arange(per_day) >= 10) & (np.arange(per_day) < 20),
                },
                schema_overrides={S.IS_POSITIVE: pl.Boolean, S.EXAM_REASON: pl.String},
            )
        )
    return pl.concat(parts)


def test_bootstrap_is_reproducible_and_the_decision_follows_its_lower_bound():
    frame = better_frame()
    days = sorted(frame[S.ARRIVAL_DATE].unique().to_list())
    one = estimate(frame, "ch", "champ", "q", days, seed=3, n_boot=500)
    again = estimate(frame, "ch", "champ", "q", days, seed=3, n_boot=500)
    assert one.interval == again.interval and one.interval_ips == again.interval_ips
    assert one.difference == pytest.approx(20.0)  # 4 targeted hits a day, 5 days, q cancels
    assert 0 < one.interval[0] <= one.difference <= one.interval[1]
    assert one.labelled_positives == 20 and one.random_exams == 20 and one.random_positives == 0
    promoted, reason = decide(one, min_positives=10)
    assert promoted and "lower bound" in reason
    # the same point estimate with a margin above the lower bound: kept
    promoted, reason = decide(one, min_positives=10, margin=one.interval[0] + 1)
    assert not promoted and "champion kept" in reason
    # a bootstrap whose interval straddles zero keeps the champion
    lo, hi = paired_bootstrap(np.r_[np.ones(5), -np.ones(5), np.zeros(90)], np.zeros(100, dtype=int), 500, seed=3)
    assert lo < 0 < hi
    assert paired_bootstrap(np.r_[np.ones(5), -np.ones(5), np.zeros(90)], np.zeros(100, dtype=int), 500, seed=3) == (
        lo,
        hi,
    )
    straddling = type(one)(**{**one.__dict__, "interval": (lo, hi)})
    assert decide(straddling, min_positives=10) == (False, "interval straddles zero: champion kept")
    same = type(one)(**{**one.__dict__, "interval": (0.0, 0.0)})
    assert decide(same, min_positives=10) == (
        False,
        "no difference between challenger and champion (interval [0, 0]): champion kept",
    )


def test_three_labelled_positives_are_not_enough_evidence_even_for_a_higher_estimate():
    frame = better_frame(n_days=1, positives_per_day=3)
    days = frame[S.ARRIVAL_DATE].unique().to_list()
    ev = estimate(frame, "ch", "champ", "q", days, seed=0, n_boot=300)
    assert ev.labelled_positives == 3 and ev.difference > 0
    promoted, reason = decide(ev, min_positives=10)
    assert not promoted
    assert reason == "not enough evidence: champion kept (3 labelled positives < minimum 10)"


def test_printed_decision_line_has_the_interval_and_the_counts(capsys):
    """A decision record as retrain writes it (evidence written out by hand, so this fails on a
    CLI that prints only the reason)."""
    from riskpipe.cli.show import _print_decision

    evidence = {
        "estimator": "doubly robust",
        "days": ["2026-03-01", "2026-03-02"],
        "challenger_hits": 12.34,
        "champion_hits": 10.0,
        "difference": 2.34,
        "interval": [-1.26, 5.81],
        "level": 0.95,
        "challenger_hits_ips": 0.0,
        "champion_hits_ips": 0.0,
        "difference_ips": 0.0,
        "interval_ips": [0.0, 0.0],
        "labelled_positives": 31,
        "random_exams": 160,
        "random_positives": 0,
        "bootstrap": 2000,
        "seed": 7,
    }
    _print_decision(
        {
            "promoted": False,
            "challenger_version": "m2",
            "reason": "interval straddles zero: champion kept",
            "evidence": evidence,
        }
    )
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("retrain: kept the champion (challenger m2): interval straddles zero: champion kept;")
    assert "challenger 12.3 vs champion 10.0" in out and "95% interval [-1.3, +5.8]" in out
    assert "31 labelled positives, 160 random exams, 0 random positives" in out
    assert summary({"evidence": evidence}) in out


def test_recorded_selection_probabilities_replace_the_day_rate():
    """Novelty-aware exploration draws with unequal chances: a random exam's recorded
    ``selection_probability`` sets its weight, not the day's share of random exams."""
    frame = hand_frame().with_columns(
        pl.when(pl.col(S.SHIPMENT_ID) == "01-00")
        .then(0.5)
        .when(pl.col(S.SHIPMENT_ID) == "02-00")
        .then(0.05)
        .otherwise(None)
        .cast(pl.Float64)
        .alias(S.SELECTION_PROBABILITY)
    )
    # two draws per day (riskpipe.propensity): lam = compliance exams' share of the random exams,
    # r = compliance exams / shipments off the list; weight lam + (1 - lam) / pi on the list,
    # lam / r + 1 - lam off it. Day 1: lam 1/2, r 1/9: row 0 1.5, row 1 5. Day 2: lam 3/4,
    # r 3/19: row 0 0.75 + 0.25 * 20 = 5.75, rows 1-3 5.
    # A: day 1 row 0 + row 2 targeted (1) + day 2 row 0
    assert ips_hits(frame, "a") == pytest.approx(1.5 + 1.0 + 5.75)
    # B: day 2 row 0 + row 1
    assert ips_hits(frame, "b") == pytest.approx(5.75 + 5.0)
    # DR, A: day 1 row 0 (0.1 + 0.9 * 1.5) + row 2 targeted (1) + day 2 row 0 (0.1 + 0.9 * 5.75)
    assert dr_hits(frame, "a", "q") == pytest.approx(1.45 + 1.0 + 5.275)


def _two_draw_day(rng: np.random.Generator, y: np.ndarray, pi: np.ndarray, rate: float) -> pl.DataFrame:
    """One day whose random exams come from a uniform compliance draw (nothing recorded) and a
    systematic exploration draw with recorded chances ``pi`` (both returned as ``random``)."""
    from riskpipe.rank import systematic_sample

    n = len(y)
    compliance = rng.random(n) < rate
    perm = rng.permutation(n)
    explore = systematic_sample(pi[perm], float(rng.random()))[np.argsort(perm)]
    examined = compliance | explore
    return pl.DataFrame(
        {
            S.ARRIVAL_DATE: [date(2026, 1, 10)] * n,
            S.SHIPMENT_ID: [f"s{i:05d}" for i in range(n)],
            S.IS_POSITIVE: pl.Series(np.where(examined, y, -1)).cast(pl.Int8).replace(-1, None),
            S.EXAM_REASON: pl.Series(np.where(examined, "random", None).tolist(), dtype=pl.String).cast(S.ExamReason),
            S.SELECTION_PROBABILITY: pl.Series(np.where(explore, pi, np.nan)).fill_nan(None),
        }
    )


def test_ips_with_compliance_and_exploration_exams_on_one_day_is_unbiased():
    """Both random draws each stand for the whole day: summing them as one sample (and counting
    exploration exams in the compliance rate) overstated the hits by ~70 %."""
    from riskpipe.rank import inclusion_probabilities

    rng = np.random.default_rng(1)
    n = 3000
    y = (rng.random(n) < 0.05).astype(int)
    novelty = rng.random(n)
    pi = inclusion_probabilities(0.5 / n + 0.5 * novelty / novelty.sum(), 60)
    selected = np.zeros(n, dtype=bool)
    selected[:1200] = True
    truth = y[selected].sum()
    est = [
        ips_hits(_two_draw_day(rng, y, pi, 0.02).with_columns(pl.Series("sel", selected)), "sel") for _ in range(200)
    ]
    se = np.std(est) / np.sqrt(len(est))
    assert abs(np.mean(est) - truth) < 3 * se, (np.mean(est), se, truth)


def test_ips_counts_the_known_outcomes_of_targeted_picks():
    """Exploration is drawn only among the shipments risk did not pick, so the champion's own
    picks (the targeted exams) have chance 0 of a random exam: its IPS was structurally 0 and
    the comparison favoured the challenger. Their outcomes are known and count as such."""
    rng = np.random.default_rng(2)
    n, day = 1000, date(2026, 1, 10)
    y = (rng.random(n) < 0.05).astype(int)
    champ = np.zeros(n, dtype=bool)
    champ[:100] = True  # the published risk picks, examined (targeted)
    chal = np.zeros(n, dtype=bool)
    chal[50:150] = True  # shares 50 of them
    res = []
    for _ in range(200):
        explore = np.zeros(n, dtype=bool)
        explore[100 + rng.choice(n - 100, 30, replace=False)] = True  # among the non-risk rows
        examined = champ | explore
        frame = pl.DataFrame(
            {
                S.ARRIVAL_DATE: [day] * n,
                S.SHIPMENT_ID: [f"s{i:05d}" for i in range(n)],
                S.IS_POSITIVE: pl.Series(np.where(examined, y, -1)).cast(pl.Int8).replace(-1, None),
                S.EXAM_REASON: pl.Series(
                    np.where(champ, "targeted", np.where(explore, "random", None)).tolist(), dtype=pl.String
                ).cast(S.ExamReason),
                S.SELECTION_PROBABILITY: pl.Series(np.where(explore, 30 / (n - 100), np.nan)).fill_nan(None),
                "ch": chal,
                "cp": champ,
            }
        )
        res.append((ips_hits(frame, "ch"), ips_hits(frame, "cp")))
    got = np.array(res)
    assert (got[:, 1] == y[champ].sum()).all()  # every champion pick is examined: exact
    se = got[:, 0].std() / np.sqrt(len(got))
    assert abs(got[:, 0].mean() - y[chal].sum()) < 3 * se + 1e-9, (got[:, 0].mean(), se, y[chal].sum())
